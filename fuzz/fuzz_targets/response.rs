//! An instance's response as the gateway's HTTP/1.1 client reads it: `parse_response_head`,
//! then the body with the `BodyReader` the head chose.
//!
//! Input: a flags byte (bit 0: the request was a `HEAD`; the rest: where to split the
//! input), then the bytes the instance sent. Properties:
//! - read whole or in two pieces split anywhere, the head, the body and the bytes left over
//!   are the same;
//! - a head that parses is consistent with its bytes: what it removed from the buffer is a
//!   complete head within the size limit, the framing follows RFC 9112 §6.3 (no body for
//!   `HEAD`, 1xx, 204 and 304; `Transfer-Encoding` over `Content-Length`; a length is the
//!   one all `Content-Length` headers agree on), a connection whose framing ends only at
//!   close is never reused, and no hop-by-hop header is forwarded to the client;
//! - the body reader never yields more bytes than it was given, nor more than a declared
//!   `Content-Length`.
#![no_main]

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use libfuzzer_sys::fuzz_target;
use strata_gateway::upstream::h1::{
    BodyKind, BodyReader, Decoded, MAX_HEAD_BYTES, ResponseHead, parse_response_head,
};

/// What reading gave, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The head is refused.
    Refused,
    /// The head is incomplete.
    Partial,
    /// A head, the body read so far, how the body ended, and the bytes left.
    Response {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body_kind: BodyKind,
        keep_alive: bool,
        body: Vec<u8>,
        end: End,
        left: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Done,
    NeedMore,
    Refused,
}

fn read(pieces: &[&[u8]], head_request: bool) -> Read {
    let mut buf = BytesMut::new();
    let mut head: Option<ResponseHead> = None;
    let mut reader: Option<BodyReader> = None;
    let mut body = Vec::new();
    let mut end = End::NeedMore;
    for piece in pieces {
        buf.extend_from_slice(piece);
        if head.is_none() {
            let before = buf.len();
            match parse_response_head(&mut buf, head_request) {
                Ok(Some(h)) => {
                    assert!(before - buf.len() <= MAX_HEAD_BYTES, "head over the limit");
                    reader = Some(BodyReader::new(h.body));
                    head = Some(h);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete head was consumed");
                    assert!(buf.len() < MAX_HEAD_BYTES, "an oversized head is waited on");
                    continue;
                }
                Err(_) => return Read::Refused,
            }
        }
        let Some(r) = reader.as_mut() else { continue };
        if end != End::NeedMore {
            continue;
        }
        end = loop {
            match r.decode(&mut buf) {
                Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                Ok(Decoded::NeedMore) => break End::NeedMore,
                Ok(Decoded::Done) => break End::Done,
                Err(_) => break End::Refused,
            }
        };
    }
    let Some(head) = head else {
        return Read::Partial;
    };
    let mut headers: Vec<(String, Vec<u8>)> = head
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    Read::Response {
        status: head.status.as_u16(),
        headers,
        body_kind: head.body,
        keep_alive: head.keep_alive,
        body,
        end,
        left: if end == End::Refused {
            Vec::new()
        } else {
            buf.to_vec()
        },
    }
}

/// The response's own header lines, parsed again with httparse (the head parsed, so they are
/// well-formed): (lower-case name, value).
fn raw_headers(input: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(input) {
        Ok(httparse::Status::Complete(_)) => response
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect(),
        other => panic!("the head parsed but httparse says {other:?}"),
    }
}

fn check(input: &[u8], head_request: bool, read: &Read) {
    let Read::Response {
        status,
        headers,
        body_kind,
        keep_alive,
        body,
        end,
        left,
    } = read
    else {
        return;
    };
    assert!((100..=999).contains(status));
    let raw = raw_headers(input);
    let lengths: Vec<&[u8]> = raw
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.trim_ascii())
        .collect();
    let transfer_encoded = raw.iter().any(|(n, _)| n == "transfer-encoding");
    if head_request || *status < 200 || *status == 204 || *status == 304 {
        assert_eq!(*body_kind, BodyKind::Empty, "a response that has no body");
    } else if transfer_encoded {
        assert!(
            matches!(body_kind, BodyKind::Chunked | BodyKind::Close),
            "Transfer-Encoding decides the framing: {body_kind:?}"
        );
        if !lengths.is_empty() {
            assert!(
                !keep_alive,
                "Content-Length with Transfer-Encoding is reused"
            );
            assert!(headers.iter().all(|(n, _)| n != CONTENT_LENGTH.as_str()));
        }
    } else if let BodyKind::Length(n) = body_kind {
        assert!(!lengths.is_empty(), "a length from nowhere");
        for value in &lengths {
            assert_eq!(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok()),
                Some(*n),
                "a length that is not every Content-Length"
            );
        }
    } else if *body_kind == BodyKind::Close {
        assert!(lengths.is_empty(), "Content-Length ignored");
    }
    if *body_kind == BodyKind::Close {
        assert!(!keep_alive, "a close-delimited body on a reused connection");
    }
    for (name, _) in headers {
        let switching = *status == 101 && (name == UPGRADE.as_str() || name == CONNECTION.as_str());
        assert!(
            switching
                || !(name == CONNECTION.as_str()
                    || name == TE.as_str()
                    || name == TRAILER.as_str()
                    || name == TRANSFER_ENCODING.as_str()
                    || name == UPGRADE.as_str()
                    || name == "keep-alive"
                    || name.starts_with("proxy-")),
            "hop-by-hop header {name} forwarded"
        );
    }
    let after_head = input.len() - raw_head_len(input);
    assert!(
        body.len() + left.len() <= after_head,
        "more bytes out than in"
    );
    if let BodyKind::Length(n) = body_kind {
        assert!(body.len() as u64 <= *n, "more than Content-Length");
        if *end == End::Done {
            assert_eq!(body.len() as u64, *n);
        }
    }
    if *body_kind == BodyKind::Empty {
        assert!(body.is_empty());
        assert_eq!(*end, End::Done);
    }
}

fn raw_head_len(input: &[u8]) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    match httparse::Response::new(&mut slots).parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => input.len(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, bytes)) = input.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let whole = read(&[bytes], head_request);
    check(bytes, head_request, &whole);
    let at = if bytes.is_empty() {
        0
    } else {
        usize::from(flags >> 1) * bytes.len() / 128
    };
    let split = read(&[&bytes[..at], &bytes[at..]], head_request);
    assert_eq!(whole, split, "split at {at}");
});
