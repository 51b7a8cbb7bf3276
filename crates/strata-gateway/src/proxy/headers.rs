//! The header rules between client and instance, one home for every path that talks to an
//! instance (requests proxied, pipelined or upgraded, and the responses coming back): which
//! headers are hop-by-hop, the forwarding headers the gateway adds, the trace context it
//! passes on (`traceparent`), and when a request may be repeated. The HTTP/1.1 client
//! ([`crate::upstream::h1`]) applies them while it writes a request head and parses a response
//! head, so each message is rewritten once.

use http::header::{CONNECTION, HeaderMap, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use strata_core::http::{TRACEPARENT, TRACESTATE, TraceContext, accept_traceparent};

/// The client addresses the request passed through, oldest first.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used to reach the gateway.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Makes a non-idempotent request safe to repeat (the instance deduplicates by key).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Whether `name` only concerns one connection (RFC 9110 §7.6.1), plus `Proxy-*`: credentials
/// and negotiation meant for the gateway itself.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Standard names compare as enum tags, so this is a few integer comparisons per header.
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The header names a message's `Connection` header lists, which are hop-by-hop too. Most
/// messages have no `Connection` header: no allocation then.
pub fn connection_tokens(headers: &HeaderMap) -> Vec<&[u8]> {
    let mut tokens = Vec::new();
    for value in headers.get_all(CONNECTION) {
        tokens.extend(connection_value_tokens(value.as_bytes()));
    }
    tokens
}

/// The non-empty, trimmed tokens of one `Connection` header value.
pub fn connection_value_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether header `name` travels on to the next hop: it is not hop-by-hop and the message's
/// `Connection` header does not name it (`named`, see [`connection_tokens`]). On a protocol
/// switch (`switching`: a WebSocket handshake and its `101`), `Upgrade` and `Connection`
/// travel too, since the other side must see them.
pub fn forwards(name: &HeaderName, named: &[&[u8]], switching: bool) -> bool {
    if switching && (name == UPGRADE || name == CONNECTION) {
        return true;
    }
    !is_hop_by_hop(name)
        && !named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
}

/// Rewrites the request's W3C trace context for the instance, whatever the protocol (HTTP/1.1,
/// h2c or an upgrade: each forwards the header as rewritten here) and returns the gateway's
/// own: the client's trace when its `traceparent` is valid, a new one otherwise (a malformed
/// header is replaced, never refused), with a span id of the gateway's own, which the
/// instance receives as its parent. `tracestate` travels untouched with a valid
/// `traceparent`; with a new trace it is dropped, since it described the client's.
pub fn rewrite_traceparent(headers: &mut HeaderMap) -> TraceContext {
    let client = accept_traceparent(headers);
    if client.is_none() {
        headers.remove(TRACESTATE);
    }
    let own = TraceContext::continued(client);
    headers.insert(TRACEPARENT, own.header_value());
    own
}

/// Whether the request may be sent twice: an idempotent method (RFC 9110 §9.2.2, as the
/// gateway's policy lists them) or an `Idempotency-Key` the instance deduplicates by.
pub fn is_repeatable(method: &http::Method, headers: &HeaderMap) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The names of `map` that [`forwards`] lets through.
    fn forwarded(map: &HeaderMap, switching: bool) -> Vec<&str> {
        let named = connection_tokens(map);
        map.keys()
            .filter(|n| forwards(n, &named, switching))
            .map(HeaderName::as_str)
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let map = headers(&[
            ("host", "shop"),
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ]);
        assert_eq!(forwarded(&map, false), ["host", "x-kept"]);
        assert_eq!(
            forwarded(&map, true),
            ["host", "connection", "upgrade", "x-kept"],
            "a protocol switch keeps its two headers"
        );
    }

    #[test]
    fn end_to_end_headers_travel() {
        let map = headers(&[("host", "a"), ("content-length", "3"), ("cookie", "x=1")]);
        assert_eq!(forwarded(&map, false).len(), 3);
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_the_gateways_span() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut map = headers(&[("traceparent", client), ("tracestate", "a=1,b=2")]);
        let own = rewrite_traceparent(&mut map);
        assert_eq!(
            own.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let sent = map["traceparent"].to_str().unwrap();
        assert_eq!(sent, own.to_string());
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(&sent[36..52], "00f067aa0ba902b7", "the gateway's own span");
        assert_eq!(map["tracestate"], "a=1,b=2");
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_trace_without_tracestate() {
        for given in [
            None,
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("garbage"),
        ] {
            let mut map = headers(&[("tracestate", "a=1")]);
            if let Some(value) = given {
                map.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
            }
            let own = rewrite_traceparent(&mut map);
            assert_eq!(map.get_all(TRACEPARENT).iter().count(), 1);
            let sent = map["traceparent"].to_str().unwrap();
            assert_eq!(TraceContext::parse(sent.as_bytes()), Some(own), "{given:?}");
            assert!(!sent.contains("4bf92f3577b34da6"), "{given:?}");
            assert!(!map.contains_key(TRACESTATE), "{given:?}");
        }
    }

    #[test]
    fn only_idempotent_methods_or_keyed_requests_repeat() {
        let none = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_repeatable(&method, &none), "{method}");
        }
        assert!(!is_repeatable(&Method::POST, &none));
        assert!(!is_repeatable(&Method::PATCH, &none));
        assert!(is_repeatable(
            &Method::POST,
            &headers(&[("idempotency-key", "k1")])
        ));
    }
}
