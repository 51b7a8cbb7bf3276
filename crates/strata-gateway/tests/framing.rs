//! Property tests of the gateway's HTTP/1.1 framing (`upstream::h1`): arbitrary valid
//! messages written out and read back give the same value, read whole or fed in pieces split
//! at any byte.
//!
//! - Request heads the gateway writes for an instance (`encode_request`) parse back, with an
//!   instance's parser (httparse, as hyper's), to the same method, target, headers and
//!   framing, and no strict prefix of them reads as a complete head.
//! - Response heads and bodies an instance writes (`Content-Length`, chunked with extensions
//!   and trailers, until close) read back through `parse_response_head` and `BodyReader` to the
//!   same status, headers and body, with the same bytes left over for the next response.
//! - A chunked body written as the gateway streams a client's body to an instance decodes to
//!   the same bytes.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use proptest::prelude::*;
use strata_gateway::upstream::h1::{
    BodyKind, BodyReader, Decoded, RequestFraming, ResponseHead, encode_request,
    parse_response_head,
};

const CLIENT_IP: &[u8] = b"192.0.2.7";

/// End-to-end header names: tokens that are neither hop-by-hop nor written by the gateway.
fn header_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9-]{1,12}|accept|authorization|cookie|content-type|idempotency-key|user-agent"
        .prop_filter("written by the gateway", |n| {
            n != "x-forwarded-for" && n != "x-forwarded-proto"
        })
}

/// Header values as a peer sends them: visible ASCII with inner spaces, no whitespace at
/// either end (a parser trims it).
fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,30}[!-~])?|"
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((header_name(), header_value()), 0..8)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        "[A-Z]{1,10}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Origin-form targets: a path of segments and an optional query.
fn target() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,8}", 0..5),
        prop::option::of("[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,20}"),
    )
        .prop_map(|(segments, query)| {
            let mut target = format!("/{}", segments.join("/"));
            if let Some(query) = query {
                target.push('?');
                target.push_str(&query);
            }
            target
        })
}

fn framing() -> impl Strategy<Value = RequestFraming> {
    prop_oneof![
        Just(RequestFraming::None),
        Just(RequestFraming::Chunked),
        any::<u64>().prop_map(RequestFraming::Length),
    ]
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// A request head as the instance reads it: method, target, (lower-case name, value) pairs.
type ParsedRequest = (String, String, Vec<(String, Vec<u8>)>);

fn parse_request(bytes: &[u8]) -> Option<ParsedRequest> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(bytes).unwrap() {
        httparse::Status::Partial => None,
        httparse::Status::Complete(len) => {
            assert_eq!(len, bytes.len(), "bytes after the head");
            assert_eq!(request.version, Some(1));
            Some((
                request.method.unwrap().to_owned(),
                request.path.unwrap().to_owned(),
                request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect(),
            ))
        }
    }
}

/// A response an instance sends: status, end-to-end headers, body and its framing.
#[derive(Debug, Clone)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    /// The body's data; for chunked framing, one entry per chunk (none empty).
    chunks: Vec<Vec<u8>>,
    /// Chunk extensions (`;name=value`) by chunk, cycled.
    extensions: Vec<String>,
    /// Trailer field lines of a chunked body.
    trailers: Vec<(String, String)>,
    /// Bytes of the next response, already in the same read.
    next: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    Close,
}

impl Response {
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn has_body(&self) -> bool {
        !(self.status < 200 || self.status == 204 || self.status == 304)
    }

    fn write(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} Reason\r\n", self.status).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let body = self.body();
        match self.framing {
            Framing::Length => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                if self.has_body() {
                    out.extend_from_slice(&body);
                }
            }
            Framing::Chunked => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                if self.has_body() {
                    out.extend_from_slice(&self.chunked_body());
                }
            }
            Framing::Close => {
                out.extend_from_slice(b"Connection: close\r\n\r\n");
                if self.has_body() {
                    out.extend_from_slice(&body);
                }
            }
        }
        if self.framing != Framing::Close || !self.has_body() {
            out.extend_from_slice(&self.next);
        }
        out
    }

    fn chunked_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let extension = self
                .extensions
                .get(i % self.extensions.len().max(1))
                .map_or("", String::as_str);
            out.extend_from_slice(format!("{:X}{extension}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in &self.trailers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn response() -> impl Strategy<Value = Response> {
    (
        prop_oneof![
            Just(200u16),
            Just(201),
            Just(204),
            Just(304),
            Just(404),
            200u16..600
        ],
        headers(),
        prop_oneof![
            Just(Framing::Length),
            Just(Framing::Chunked),
            Just(Framing::Close)
        ],
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..5),
        prop::collection::vec(";[a-z]{1,5}(=[a-z0-9]{0,5})?| ;x|", 0..3),
        prop::collection::vec((header_name(), header_value()), 0..3),
        prop::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(
            |(status, headers, framing, chunks, extensions, trailers, next)| Response {
                status,
                headers,
                framing,
                chunks,
                extensions,
                trailers,
                next,
            },
        )
}

/// What reading a response gave: its head, body, and the bytes left for the next one.
struct Read {
    head: ResponseHead,
    body: Vec<u8>,
    left: Vec<u8>,
}

/// Reads a response fed in `pieces`, as the gateway's client does from its socket; a
/// close-delimited body ends when the pieces do.
fn read_response(pieces: &[&[u8]]) -> Read {
    let mut buf = BytesMut::new();
    let mut head = None;
    let mut reader: Option<BodyReader> = None;
    let mut body = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if head.is_none() {
            match parse_response_head(&mut buf, false).unwrap() {
                Some(h) => {
                    reader = Some(BodyReader::new(h.body));
                    head = Some(h);
                }
                None => continue,
            }
        }
        let reader = reader.as_mut().unwrap();
        while let Decoded::Data(data) = reader.decode(&mut buf).unwrap() {
            body.extend_from_slice(&data);
        }
    }
    let mut reader = reader.expect("no complete head");
    if !reader.is_done() {
        reader.eof().unwrap();
    }
    Read {
        head: head.unwrap(),
        body,
        left: buf.to_vec(),
    }
}

/// Decodes a chunked body fed in `pieces`; the data and the bytes left after it.
fn decode_chunked(pieces: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let mut reader = BodyReader::new(BodyKind::Chunked);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Decoded::Data(d) = reader.decode(&mut buf).unwrap() {
            data.extend_from_slice(&d);
        }
    }
    assert!(reader.is_done(), "the body did not end");
    (data, buf.to_vec())
}

/// `bytes` cut at `a` and `b` (taken modulo its length, in order) into three pieces.
fn three_pieces(bytes: &[u8], a: usize, b: usize) -> [&[u8]; 3] {
    let (mut a, mut b) = (a % (bytes.len() + 1), b % (bytes.len() + 1));
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    [&bytes[..a], &bytes[a..b], &bytes[b..]]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_heads_read_back_as_written(
        method in method(),
        target in target(),
        pairs in headers(),
        https in any::<bool>(),
        framing in framing(),
    ) {
        let headers = header_map(&pairs);
        let mut out = Vec::new();
        encode_request(&mut out, &method, &target, &headers, CLIENT_IP, https, framing, false);

        for end in 0..out.len() {
            prop_assert!(parse_request(&out[..end]).is_none(), "complete at {end} of {}", out.len());
        }
        let (read_method, read_target, read_headers) = parse_request(&out).unwrap();
        prop_assert_eq!(read_method, method.as_str());
        prop_assert_eq!(read_target, target);

        let mut expected: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect();
        // `HeaderMap` iterates names in first-seen order, each name's values together.
        let mut order: Vec<&String> = Vec::new();
        for (name, _) in &pairs {
            if !order.contains(&name) {
                order.push(name);
            }
        }
        expected.sort_by_key(|(n, _)| order.iter().position(|o| *o == n));
        expected.push(("x-forwarded-for".into(), CLIENT_IP.to_vec()));
        expected.push((
            "x-forwarded-proto".into(),
            if https { b"https".to_vec() } else { b"http".to_vec() },
        ));
        match framing {
            RequestFraming::None => {
                if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                    expected.push(("content-length".into(), b"0".to_vec()));
                }
            }
            RequestFraming::Length(n) => {
                expected.push(("content-length".into(), n.to_string().into_bytes()));
            }
            RequestFraming::Chunked => {
                expected.push(("transfer-encoding".into(), b"chunked".to_vec()));
            }
        }
        prop_assert_eq!(read_headers, expected);
    }

    #[test]
    fn responses_read_back_as_written_at_any_split(
        response in response(),
        a in any::<usize>(),
        b in any::<usize>(),
    ) {
        let bytes = response.write();
        let whole = read_response(&[&bytes]);
        prop_assert_eq!(whole.head.status, StatusCode::from_u16(response.status).unwrap());
        let mut names: Vec<&str> = whole.head.headers.keys().map(HeaderName::as_str).collect();
        names.retain(|n| *n != "content-length");
        let mut sent: Vec<&str> = Vec::new();
        for (name, _) in &response.headers {
            if !sent.contains(&name.as_str()) {
                sent.push(name);
            }
        }
        prop_assert_eq!(names, sent);
        for (name, value) in &response.headers {
            prop_assert!(
                whole.head.headers.get_all(name.as_str()).iter().any(|v| v == value.as_str())
            );
        }
        let body = if response.has_body() { response.body() } else { Vec::new() };
        prop_assert_eq!(&whole.body, &body);
        let next = if response.framing == Framing::Close && response.has_body() {
            Vec::new()
        } else {
            response.next.clone()
        };
        prop_assert_eq!(&whole.left, &next);
        prop_assert_eq!(
            whole.head.keep_alive,
            response.framing != Framing::Close
        );

        let split = read_response(&three_pieces(&bytes, a, b));
        prop_assert_eq!(split.head.status, whole.head.status);
        prop_assert_eq!(&split.head.headers, &whole.head.headers);
        prop_assert_eq!(split.head.body, whole.head.body);
        prop_assert_eq!(split.head.keep_alive, whole.head.keep_alive);
        prop_assert_eq!(split.body, whole.body);
        prop_assert_eq!(split.left, whole.left);
    }

    #[test]
    fn chunked_bodies_decode_to_their_data_at_every_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..6),
        next in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        // As the gateway streams a client's body: `{:x}\r\n`, the data, `\r\n`, then `0\r\n\r\n`.
        let mut bytes = Vec::new();
        for chunk in &chunks {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes.extend_from_slice(&next);
        let data = chunks.concat();
        for at in 0..=bytes.len() {
            let (read, left) = decode_chunked(&[&bytes[..at], &bytes[at..]]);
            prop_assert_eq!(&read, &data, "split at {}", at);
            prop_assert_eq!(&left, &next, "split at {}", at);
        }
        // One byte at a time, as a slow instance sends it.
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let (read, left) = decode_chunked(&bytewise);
        prop_assert_eq!(read, data);
        prop_assert_eq!(left, next);
    }
}
