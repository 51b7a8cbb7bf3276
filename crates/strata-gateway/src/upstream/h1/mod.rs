//! HTTP/1.1 on the instance side, without I/O: the request head written straight into a byte
//! buffer, the response head parsed with `httparse`, and the response body's framing
//! (`Content-Length`, chunked, until close, none: [`BodyReader`], in `body`). The connection
//! code in [`crate::upstream`] feeds these bytes from and to the socket; everything here is
//! tested byte by byte.

mod body;

use bytes::BytesMut;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::{Method, StatusCode};

use crate::proxy::headers::{self, X_FORWARDED_FOR, X_FORWARDED_PROTO};

pub use body::{BodyReader, Decoded};

/// Most headers a response head may carry (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted from an instance, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why an instance's response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The response head is not valid HTTP/1.x.
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    /// The response head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`].
    #[error("response head too large (over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers)")]
    HeadTooLarge,
    /// A header name or value that cannot be forwarded.
    #[error("invalid response header")]
    Header,
    /// `Content-Length` is not a number, or several disagree.
    #[error("invalid Content-Length")]
    ContentLength,
    /// The chunked body is malformed.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// The connection ended in the middle of the response.
    #[error("the instance closed the connection in the middle of the response")]
    Incomplete,
}

/// How the request body is framed on the way to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body. `Content-Length: 0` is still sent for methods that normally carry one.
    None,
    /// A body of exactly this many bytes.
    Length(u64),
    /// A body of unknown length, sent chunked.
    Chunked,
}

/// Writes a request head for an instance into `out`: origin-form `target`, HTTP/1.1, the
/// client's headers that `proxy::headers::forwards` lets through, without its framing headers, then
/// `X-Forwarded-For` (the client's chain plus `client_ip`), `X-Forwarded-Proto` (`https` when
/// the client came over TLS), the framing, and the blank line. With `upgrade` (a WebSocket
/// handshake), the client's `Upgrade` is kept and `Connection: upgrade` asks for the switch.
/// Returns whether the client sent a `Host` (when not, the caller adds the instance's
/// authority: see [`insert_host`]).
#[allow(clippy::too_many_arguments)]
pub fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    client_ip: &[u8],
    https: bool,
    framing: RequestFraming,
    upgrade: bool,
) -> bool {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = headers::connection_tokens(headers);
    let mut has_host = false;
    let mut forwarded = 0usize;
    for (name, value) in headers {
        if name == HOST {
            has_host = true;
        } else if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == X_FORWARDED_PROTO
            // Written below, reduced to the one token the instance needs.
            || name == CONNECTION
        {
            continue;
        } else if name == X_FORWARDED_FOR {
            forwarded += 1;
            continue;
        } else if !headers::forwards(name, &named, upgrade) {
            continue;
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded > 0 {
        for value in headers.get_all(&X_FORWARDED_FOR) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(if https {
        &b"\r\nx-forwarded-proto: https\r\n"[..]
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    match framing {
        RequestFraming::None => {
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    has_host
}

/// Inserts `Host: authority` right after the request line of a head written by
/// [`encode_request`] (HTTP/1.0 clients may send no `Host`; HTTP/1.1 instances require one).
pub fn insert_host(head: &[u8], authority: &[u8]) -> Vec<u8> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(head.len(), |p| p + 2);
    let mut out = Vec::with_capacity(head.len() + authority.len() + 8);
    out.extend_from_slice(&head[..line_end]);
    put_header(&mut out, b"host", authority);
    out.extend_from_slice(&head[line_end..]);
    out
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: `HEAD`, 1xx, 204, 304, or `Content-Length: 0`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the instance closes the connection.
    Close,
}

/// A parsed response head, with the headers to forward to the client.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The headers `proxy::headers::forwards` lets through (`Upgrade`/`Connection` too on a 101).
    pub headers: HeaderMap,
    pub body: BodyKind,
    /// Whether the connection may carry another request once this response is read.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf`, removing it from `buf` (header values
/// share its memory). `Ok(None)`: incomplete, read more. `head_request`: the request was a
/// `HEAD`, so the response has no body whatever its headers say.
///
/// # Errors
/// [`H1Error`] for a malformed or oversized head, or an unusable `Content-Length`.
pub fn parse_response_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, H1Error> {
    // Offsets into `buf` of each header's name and value, taken while `httparse` borrows it.
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let (len, code, minor, count) = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= MAX_HEAD_BYTES {
                    Err(H1Error::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
            Err(error) => return Err(H1Error::Parse(error)),
        };
        if len > MAX_HEAD_BYTES {
            return Err(H1Error::HeadTooLarge);
        }
        let base = buf.as_ptr() as usize;
        let count = response.headers.len();
        for (span, header) in spans.iter_mut().zip(response.headers.iter()) {
            let name = header.name.as_ptr() as usize - base;
            let value = header.value.as_ptr() as usize - base;
            *span = (
                name,
                name + header.name.len(),
                value,
                value + header.value.len(),
            );
        }
        (
            len,
            response.code.unwrap_or(0),
            response.version.unwrap_or(1),
            count,
        )
    };
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Parse(httparse::Error::Status))?;
    let head = buf.split_to(len).freeze();
    let upgrade = code == 101;

    let mut keep_alive = minor >= 1;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoded = false;
    let mut named: Vec<&[u8]> = Vec::new();
    for &(ns, ne, vs, ve) in &spans[..count] {
        let name = &head[ns..ne];
        let value = &head[vs..ve];
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value)?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::ContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoded = true;
            // Only the last coding matters for framing.
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in headers::connection_value_tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive |= minor == 0;
                } else {
                    named.push(token);
                }
            }
        }
    }

    let mut headers = HeaderMap::with_capacity(count);
    for &(ns, ne, vs, ve) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[ns..ne]).map_err(|_| H1Error::Header)?;
        if !headers::forwards(&name, &named, upgrade) {
            continue;
        }
        let value =
            HeaderValue::from_maybe_shared(head.slice(vs..ve)).map_err(|_| H1Error::Header)?;
        headers.append(name, value);
    }

    let body = if head_request || code < 200 || code == 204 || code == 304 {
        BodyKind::Empty
    } else if transfer_encoded {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a sender that sends both
        // may be smuggling, so the connection is not reused.
        if length.is_some() {
            keep_alive = false;
        }
        if chunked {
            BodyKind::Chunked
        } else {
            keep_alive = false;
            BodyKind::Close
        }
    } else {
        match length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => {
                keep_alive = false;
                BodyKind::Close
            }
        }
    };
    if transfer_encoded && length.is_some() {
        // Forward the framing hyper will actually use (it re-frames the decoded body).
        headers.remove(CONTENT_LENGTH);
    }
    Ok(Some(ResponseHead {
        status,
        headers,
        body,
        keep_alive,
    }))
}

fn parse_length(value: &[u8]) -> Result<u64, H1Error> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(H1Error::ContentLength);
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::header::UPGRADE;

    use super::*;

    fn parse_whole(bytes: &[u8], head_request: bool) -> ResponseHead {
        let mut buf = BytesMut::from(bytes);
        parse_response_head(&mut buf, head_request)
            .unwrap()
            .unwrap()
    }

    /// Feeds `bytes` in two pieces split at every position, reading the head and then the
    /// body; returns (head, body) and checks every split gives the same result.
    fn read_split(bytes: &[u8]) -> (ResponseHead, Vec<u8>, Vec<u8>) {
        let mut result = None;
        for split in 0..=bytes.len() {
            for second_split in [split, (split + 1).min(bytes.len()), bytes.len()] {
                let pieces = [
                    &bytes[..split],
                    &bytes[split..second_split],
                    &bytes[second_split..],
                ];
                let mut buf = BytesMut::new();
                let mut head = None;
                let mut reader: Option<BodyReader> = None;
                let mut body = Vec::new();
                let mut done = false;
                for piece in pieces {
                    buf.extend_from_slice(piece);
                    if head.is_none() {
                        if let Some(h) = parse_response_head(&mut buf, false).unwrap() {
                            reader = Some(BodyReader::new(h.body));
                            head = Some(h);
                        } else {
                            continue;
                        }
                    }
                    let r = reader.as_mut().unwrap();
                    loop {
                        match r.decode(&mut buf).unwrap() {
                            Decoded::Data(d) => body.extend_from_slice(&d),
                            Decoded::NeedMore => break,
                            Decoded::Done => {
                                done = true;
                                break;
                            }
                        }
                    }
                }
                assert!(done, "body not complete at split {split}");
                let left = buf.to_vec();
                match &result {
                    None => result = Some((head.unwrap(), body, left)),
                    Some((_, b, l)) => {
                        assert_eq!(b, &body, "split {split}");
                        assert_eq!(l, &left, "split {split}");
                    }
                }
            }
        }
        result.unwrap()
    }

    #[test]
    fn a_content_length_response_reads_the_same_at_every_split() {
        let (head, body, left) =
            read_split(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhelloHTTP/1.1");
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["x-a"], "1");
        assert_eq!(head.headers["content-length"], "5");
        assert!(head.keep_alive);
        assert_eq!(body, b"hello");
        assert_eq!(
            left, b"HTTP/1.1",
            "the next response's bytes stay in the buffer"
        );
    }

    #[test]
    fn a_chunked_response_with_extensions_and_trailers_decodes_at_every_split() {
        let (head, body, left) = read_split(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n1A ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n\
              0\r\nX-Sum: 9\r\nX-Other: 1\r\n\r\nnext",
        );
        assert!(head.keep_alive);
        assert!(!head.headers.contains_key("transfer-encoding"));
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(left, b"next");
    }

    #[test]
    fn heads_without_body() {
        let head = parse_whole(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
        assert_eq!(head.body, BodyKind::Empty);
        assert_eq!(
            head.headers["content-length"], "10",
            "kept for the client's HEAD"
        );
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let raw = format!("HTTP/1.1 {status}\r\n\r\n");
            assert_eq!(parse_whole(raw.as_bytes(), false).body, BodyKind::Empty);
        }
        assert_eq!(
            parse_whole(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).body,
            BodyKind::Empty
        );
    }

    #[test]
    fn close_delimited_bodies_end_at_eof_and_are_not_reused() {
        let head = parse_whole(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(head.body, BodyKind::Close);
        assert!(!head.keep_alive);
        let mut reader = BodyReader::new(head.body);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            reader.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"abc"))
        );
        assert_eq!(reader.decode(&mut buf).unwrap(), Decoded::NeedMore);
        reader.eof().unwrap();
        assert!(reader.is_done());
        let mut cut = BodyReader::new(BodyKind::Length(4));
        assert!(cut.eof().is_err());
    }

    #[test]
    fn connection_close_and_http10_are_not_reused() {
        let close = parse_whole(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!close.keep_alive);
        assert!(!close.headers.contains_key("connection"));
        let old = parse_whole(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!old.keep_alive);
        let old_ka = parse_whole(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(old_ka.keep_alive);
    }

    #[test]
    fn hop_by_hop_response_headers_are_dropped_and_101_keeps_its_upgrade() {
        let head = parse_whole(
            b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nKeep-Alive: timeout=5\r\n\
              X-Secret: 1\r\nProxy-Authenticate: b\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        let names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept", "content-length"]);
        let switching = parse_whole(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            false,
        );
        assert_eq!(switching.status, 101);
        assert_eq!(switching.headers["upgrade"], "websocket");
        assert_eq!(switching.headers["connection"], "Upgrade");
    }

    #[test]
    fn bad_lengths_and_huge_heads_are_refused() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse_response_head(&mut buf, false).is_err());
        }
        let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        while huge.len() < MAX_HEAD_BYTES {
            huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            parse_response_head(&mut huge, false),
            Err(H1Error::HeadTooLarge)
        ));
        let mut many = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_response_head(&mut many, false),
            Err(H1Error::HeadTooLarge)
        ));
    }

    #[test]
    fn transfer_encoding_wins_over_content_length_and_is_not_reused() {
        let head = parse_whole(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(head.body, BodyKind::Chunked);
        assert!(!head.keep_alive);
        assert!(!head.headers.contains_key("content-length"));
    }

    #[test]
    fn request_heads_are_written_for_the_instance() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("host", "shop"),
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("proxy-authorization", "x"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "abc"),
            ("accept", "*/*"),
        ] {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let mut out = Vec::new();
        let has_host = encode_request(
            &mut out,
            &Method::POST,
            "/a?b=c",
            &headers,
            b"10.0.0.9",
            false,
            RequestFraming::Length(3),
            false,
        );
        assert!(has_host);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: shop\r\nx-request-id: abc\r\naccept: */*\r\n\
             x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             content-length: 3\r\n\r\n"
        );
        let mut out = Vec::new();
        let has_host = encode_request(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            b"::1",
            true,
            RequestFraming::None,
            false,
        );
        assert!(!has_host);
        let with_host = insert_host(&out, b"10.1.1.1:80");
        assert_eq!(
            String::from_utf8(with_host).unwrap(),
            "GET / HTTP/1.1\r\nhost: 10.1.1.1:80\r\nx-forwarded-for: ::1\r\n\
             x-forwarded-proto: https\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request(
            &mut out,
            &Method::PUT,
            "/",
            &HeaderMap::new(),
            b"::1",
            true,
            RequestFraming::Chunked,
            false,
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("transfer-encoding: chunked\r\n\r\n")
        );
    }

    #[test]
    fn forwarded_for_is_set_or_appended_and_the_proto_is_the_gateways() {
        let written = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            let mut out = Vec::new();
            encode_request(
                &mut out,
                &Method::GET,
                "/",
                &headers,
                b"10.0.0.9",
                false,
                RequestFraming::None,
                false,
            );
            String::from_utf8(out).unwrap()
        };
        assert!(written(&[]).contains("x-forwarded-for: 10.0.0.9\r\n"));
        assert!(
            written(&[("x-forwarded-for", "1.1.1.1")])
                .contains("x-forwarded-for: 1.1.1.1, 10.0.0.9\r\n")
        );
        let two = written(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ]);
        assert_eq!(two.matches("x-forwarded-for").count(), 1, "{two}");
        assert!(two.contains("x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"));
        assert!(
            written(&[("x-forwarded-proto", "https")]).contains("x-forwarded-proto: http\r\n"),
            "a client's own claim is not believed"
        );
    }

    #[test]
    fn upgrade_requests_keep_their_handshake_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let mut out = Vec::new();
        encode_request(
            &mut out,
            &Method::GET,
            "/ws",
            &headers,
            b"::1",
            true,
            RequestFraming::None,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("connection: upgrade\r\n"), "{text}");
        assert_eq!(text.matches("connection:").count(), 1, "{text}");
        assert!(text.contains("upgrade: websocket\r\n"), "{text}");
    }
}
