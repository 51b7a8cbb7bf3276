//! The chunked decoder of instance responses (`BodyReader` with `BodyKind::Chunked`).
//!
//! Input: one byte choosing the size of the pieces the body is fed in (0: all at once), then
//! the bytes after the response head. Properties:
//! - fed whole or in pieces, the decoder gives the same data, the same outcome (done,
//!   needs more, refused) and leaves the same bytes behind;
//! - it never yields more bytes than it was given;
//! - a body it accepts is valid chunked coding, and its data are exactly the chunks'
//!   data as a separate, straightforward reading of that coding finds them (so never more
//!   than the sizes declared).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata_gateway::upstream::h1::{BodyKind, BodyReader, Decoded};

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Done,
    NeedMore,
    Refused,
}

/// Feeds `input` in pieces of `piece` bytes (all at once for 0), decoding after each.
fn decode(input: &[u8], piece: usize) -> (Vec<u8>, End, Vec<u8>) {
    let mut reader = BodyReader::new(BodyKind::Chunked);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let pieces: Vec<&[u8]> = if piece == 0 {
        vec![input]
    } else {
        input.chunks(piece).collect()
    };
    for (i, bytes) in pieces.iter().enumerate() {
        buf.extend_from_slice(bytes);
        loop {
            match reader.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data piece");
                    data.extend_from_slice(&d);
                }
                Ok(Decoded::NeedMore) => {
                    assert!(buf.is_empty(), "needs more with bytes left in the buffer");
                    break;
                }
                Ok(Decoded::Done) => {
                    assert!(reader.is_done());
                    // The rest is the next response's: give it back with what was not fed.
                    let mut rest = buf.to_vec();
                    for later in &pieces[i + 1..] {
                        rest.extend_from_slice(later);
                    }
                    return (data, End::Done, rest);
                }
                Err(_) => return (data, End::Refused, Vec::new()),
            }
        }
    }
    assert!(reader.eof().is_err(), "a chunked body cut short ended fine");
    (data, End::NeedMore, Vec::new())
}

/// A separate reading of chunked coding (RFC 9112 §7.1, with optional whitespace before
/// extensions, as the decoder allows), for a body the decoder accepted: its data, or `None`
/// when `body` is not exactly one valid chunked body.
fn reference(body: &[u8]) -> Option<Vec<u8>> {
    let line = |from: usize| -> Option<(&[u8], usize)> {
        let end = body[from..].windows(2).position(|w| w == b"\r\n")? + from;
        let text = &body[from..end];
        (!text.contains(&b'\n') && !text.contains(&b'\r')).then_some((text, end + 2))
    };
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let (text, next) = line(at)?;
        let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return None;
        }
        let mut size: u64 = 0;
        for &d in &text[..digits] {
            let value = u64::from((d as char).to_digit(16)?);
            size = size.checked_mul(16)?.checked_add(value)?;
        }
        let rest = &text[digits..];
        let spaces = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let rest = &rest[spaces..];
        if !rest.is_empty() && rest[0] != b';' {
            return None;
        }
        at = next;
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                let (text, next) = line(at)?;
                at = next;
                if text.is_empty() {
                    return (at == body.len()).then_some(data);
                }
            }
        }
        let end = at.checked_add(usize::try_from(size).ok()?)?;
        if end + 2 > body.len() || &body[end..end + 2] != b"\r\n" {
            return None;
        }
        data.extend_from_slice(&body[at..end]);
        at = end + 2;
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&piece, body)) = input.split_first() else {
        return;
    };
    let (data, end, rest) = decode(body, 0);
    assert!(data.len() <= body.len(), "more data than bytes given");
    let split = decode(body, usize::from(piece % 16));
    assert_eq!(split, (data.clone(), end.clone(), rest.clone()));
    if end == End::Done {
        let consumed = &body[..body.len() - rest.len()];
        assert_eq!(
            reference(consumed),
            Some(data),
            "accepted a body that is not chunked coding, or read it differently"
        );
    }
});
