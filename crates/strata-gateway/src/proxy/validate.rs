//! What the gateway refuses to forward: requests whose target host or body framing an
//! instance could read differently from the gateway (RFC 9112 §3.2 and §6). Each is answered
//! 400 with the JSON error body and the connection is closed ([`ProxyError::BadRequest`]).
//!
//! Body framing is judged on the raw bytes ([`crate::framing`]), since hyper's parsed head no
//! longer shows it; the `Host` rules are judged here, on the parsed head.

use http::header::HOST;
use http::request::Parts;
use http::{HeaderValue, Version};

use crate::error::ProxyError;

/// Checks `head` and settles its `Host`: for an absolute-form target
/// (`GET http://shop.example/path`) the target's authority replaces whatever `Host` the client
/// sent (RFC 9112 §3.2.2); otherwise an HTTP/1.1 request needs exactly one valid `Host`.
///
/// # Errors
/// [`ProxyError::BadRequest`] naming what is wrong.
pub fn check(head: &mut Parts) -> Result<(), ProxyError> {
    settle_host(head)
}

fn settle_host(head: &mut Parts) -> Result<(), ProxyError> {
    if let Some(authority) = head.uri.authority() {
        // Rendered from a parsed authority: always a valid header value.
        let value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::BadRequest("invalid authority in the request target"))?;
        head.headers.insert(HOST, value);
        return Ok(());
    }
    let mut hosts = head.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if head.version == Version::HTTP_11 => Err(ProxyError::BadRequest(
            "an HTTP/1.1 request needs a Host header",
        )),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("more than one Host header")),
        (Some(host), None) if is_valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(ProxyError::BadRequest("invalid Host header")),
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2), or empty (a target without an
/// authority): a registered name or IPv4 address, or an IP literal in brackets, and a port of
/// digits.
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &literal[..end];
                let ip = !inside.is_empty()
                    && inside
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ip {
                    return false;
                }
                (&[][..], &literal[end + 1..])
            }
            None => return false,
        },
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            (&value[..end], &value[end..])
        }
    };
    let name = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    let port = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name && port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hosts_are_names_addresses_and_ports() {
        for ok in [
            "shop.example",
            "shop.example:8080",
            "10.0.0.5:80",
            "[::1]:8080",
            "a-b_c~d",
            "",
        ] {
            assert!(is_valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b/c",
            "a/b",
            "user@shop",
            "shop:80:80",
            "shop:port",
            "a?b",
            "a#b",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn an_absolute_target_replaces_the_host() {
        let mut parts = head(
            http::Request::get("http://shop.example:81/p")
                .header(HOST, "other")
                .header(HOST, "a b/c"),
        );
        check(&mut parts).unwrap();
        assert_eq!(parts.headers.get_all(HOST).iter().count(), 1);
        assert_eq!(parts.headers[HOST], "shop.example:81");
    }

    #[test]
    fn http_1_0_may_omit_the_host() {
        let mut parts = head(http::Request::get("/p").version(Version::HTTP_10));
        assert!(check(&mut parts).is_ok());
        let mut parts = head(http::Request::get("/p"));
        assert!(matches!(check(&mut parts), Err(ProxyError::BadRequest(_))));
    }
}
