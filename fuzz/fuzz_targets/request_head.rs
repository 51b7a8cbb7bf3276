//! A client's request head as the gateway takes it in and writes it out to an instance: the
//! head parsed as hyper parses it (httparse into `http` types), then rewritten by
//! `h1::encode_request` (and `h1::insert_host` when the client sent no `Host`).
//!
//! Input: a flags byte (bit 0: over TLS; bit 1: a protocol switch; bits 2–3: the body's
//! framing), then the client's bytes. Properties of the head written for the instance:
//! - it parses as exactly one complete HTTP/1.1 request head, with nothing after it;
//! - same method and target, and every end-to-end header of the client in order, byte for
//!   byte;
//! - one `X-Forwarded-For` ending with the client's address, one `X-Forwarded-Proto`
//!   naming the scheme the gateway saw, whatever the client claimed;
//! - the framing headers are the gateway's only (none of the client's `Content-Length` or
//!   `Transfer-Encoding` get through), so the instance frames the body as the gateway sends
//!   it: no request smuggling through the rewrite;
//! - no hop-by-hop header and no header the client's `Connection` names, unless the request
//!   switches protocols (then `Upgrade` and one `Connection: upgrade`);
//! - the client's `Host`, or when it sent none, one `Host` naming the instance.
#![no_main]

use http::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, UPGRADE};
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use strata_gateway::upstream::h1::{RequestFraming, encode_request, insert_host};

const CLIENT_IP: &[u8] = b"192.0.2.7";
const AUTHORITY: &[u8] = b"10.0.0.5:8101";

/// What hyper hands the proxy: method, target, headers; `None` where hyper answers 400.
fn parse_client(bytes: &[u8]) -> Option<(Method, Uri, HeaderMap)> {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(_) = request.parse(bytes).ok()? else {
        return None;
    };
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    let uri: Uri = request.path?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        headers.append(
            HeaderName::from_bytes(header.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(header.value).ok()?,
        );
    }
    Some((method, uri, headers))
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "keep-alive"
    ) || name.starts_with("proxy-")
}

/// The names the client's `Connection` headers list, lower case.
fn named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, bytes)) = input.split_first() else {
        return;
    };
    let Some((method, uri, headers)) = parse_client(bytes) else {
        return;
    };
    let https = flags & 1 == 1;
    let upgrade = flags & 2 == 2;
    let framing = match (flags >> 2) & 3 {
        0 => RequestFraming::None,
        1 => RequestFraming::Chunked,
        2 => RequestFraming::Length(0),
        _ => RequestFraming::Length(u64::from(flags) * 1000),
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::new();
    let has_host = encode_request(
        &mut out, &method, target, &headers, CLIENT_IP, https, framing, upgrade,
    );
    assert_eq!(has_host, headers.contains_key(HOST));
    if !has_host {
        out = insert_host(&out, AUTHORITY);
    }

    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut written = httparse::Request::new(&mut slots);
    let len = match written.parse(&out) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("the instance cannot parse the head: {other:?}"),
    };
    assert_eq!(len, out.len(), "bytes after the head");
    assert_eq!(written.version, Some(1));
    assert_eq!(written.method, Some(method.as_str()));
    assert_eq!(written.path, Some(target));

    let lines: Vec<(String, &[u8])> = written
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let all = |name: &str| -> Vec<&[u8]> {
        lines
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    };

    let forwarded = all("x-forwarded-for");
    assert_eq!(forwarded.len(), 1, "X-Forwarded-For: {forwarded:?}");
    assert!(forwarded[0].ends_with(CLIENT_IP));
    let proto: &[u8] = if https { b"https" } else { b"http" };
    assert_eq!(all("x-forwarded-proto"), [proto]);

    let lengths = all("content-length");
    let codings = all("transfer-encoding");
    match framing {
        RequestFraming::Chunked => {
            assert!(lengths.is_empty());
            assert_eq!(codings, [&b"chunked"[..]]);
        }
        RequestFraming::Length(n) => {
            assert!(codings.is_empty());
            assert_eq!(lengths, [n.to_string().as_bytes()]);
        }
        RequestFraming::None => {
            assert!(codings.is_empty());
            if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                assert_eq!(lengths, [&b"0"[..]]);
            } else {
                assert!(lengths.is_empty());
            }
        }
    }

    // The client's `Host` values as sent (hyper lets several through; refusing them is the
    // proxy's decision, before this rewrite), or the instance's authority.
    let hosts = all("host");
    let sent: Vec<&[u8]> = headers
        .get_all(HOST)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if sent.is_empty() {
        assert_eq!(hosts, [AUTHORITY]);
    } else {
        assert_eq!(hosts, sent);
    }

    let connection = all("connection");
    if upgrade {
        assert_eq!(connection, [&b"upgrade"[..]]);
        assert_eq!(
            all("upgrade"),
            headers
                .get_all(UPGRADE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect::<Vec<_>>()
        );
    } else {
        assert!(connection.is_empty());
    }

    // The client's end-to-end headers, in order, byte for byte.
    let named = named(&headers);
    let expected: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .filter(|(n, _)| {
            let gateway_owned = matches!(
                *n,
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "connection"
            );
            let switching = upgrade && *n == "upgrade";
            !gateway_owned && (switching || (!is_hop_by_hop(n) && !named.iter().any(|t| t == n)))
        })
        .collect();
    let kept: Vec<(&str, &[u8])> = lines
        .iter()
        .map(|(n, v)| (n.as_str(), *v))
        .filter(|(n, _)| {
            !matches!(
                *n,
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "connection"
            )
        })
        .collect();
    assert_eq!(kept, expected, "end-to-end headers changed");
});
