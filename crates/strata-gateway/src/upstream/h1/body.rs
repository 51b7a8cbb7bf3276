//! The framing of a response body being read: `Content-Length`, chunked (extensions ignored,
//! trailers read and dropped) or until the connection closes, decoded from the read buffer
//! without copying.

use bytes::{Buf, Bytes, BytesMut};

use super::{BodyKind, H1Error};

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes accepted after a chunked body (they are read and dropped).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What the next step of reading a body gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (sharing the read buffer's memory).
    Data(Bytes),
    /// The buffer holds no more of the body: read from the socket.
    NeedMore,
    /// The body ended.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// Chunk extensions, ignored up to the CR.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// Start of a trailer line, or the final CRLF.
    TrailerStart,
    /// Inside a trailer field line (dropped).
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
    Done,
}

/// The framing of a response body being read.
#[derive(Debug)]
pub struct BodyReader {
    kind: Reader,
}

#[derive(Debug)]
enum Reader {
    Length(u64),
    Chunked {
        state: Chunk,
        size: u64,
        digits: usize,
        line: usize,
        trailer: usize,
    },
    Close,
    Done,
}

impl BodyReader {
    /// A reader for a body of `kind`.
    pub fn new(kind: BodyKind) -> Self {
        let kind = match kind {
            BodyKind::Empty | BodyKind::Length(0) => Reader::Done,
            BodyKind::Length(n) => Reader::Length(n),
            BodyKind::Chunked => Reader::Chunked {
                state: Chunk::Size,
                size: 0,
                digits: 0,
                line: 0,
                trailer: 0,
            },
            BodyKind::Close => Reader::Close,
        };
        Self { kind }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Reader::Done)
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Reader::Length(n) => Some(n),
            Reader::Done => Some(0),
            Reader::Chunked { .. } | Reader::Close => None,
        }
    }

    /// Takes the next piece of body out of `buf`.
    ///
    /// # Errors
    /// [`H1Error::Chunked`] for malformed chunked framing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, H1Error> {
        match &mut self.kind {
            Reader::Done => Ok(Decoded::Done),
            Reader::Length(remaining) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(*remaining).map_or(buf.len(), |r| r.min(buf.len()));
                *remaining -= n as u64;
                let data = buf.split_to(n).freeze();
                if *remaining == 0 {
                    self.kind = Reader::Done;
                }
                Ok(Decoded::Data(data))
            }
            Reader::Close => {
                if buf.is_empty() {
                    Ok(Decoded::NeedMore)
                } else {
                    Ok(Decoded::Data(buf.split().freeze()))
                }
            }
            Reader::Chunked {
                state,
                size,
                digits,
                line,
                trailer,
            } => loop {
                if *state == Chunk::Done {
                    self.kind = Reader::Done;
                    return Ok(Decoded::Done);
                }
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                if *state == Chunk::Data {
                    let n = usize::try_from(*size).map_or(buf.len(), |s| s.min(buf.len()));
                    *size -= n as u64;
                    if *size == 0 {
                        *state = Chunk::DataCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                let byte = buf[0];
                buf.advance(1);
                *state = match (*state, byte) {
                    (Chunk::Size, b) if b.is_ascii_hexdigit() => {
                        if *size > u64::MAX >> 4 {
                            return Err(H1Error::Chunked("chunk size overflows"));
                        }
                        *size = (*size << 4) | u64::from(hex(b));
                        *digits += 1;
                        Chunk::Size
                    }
                    (Chunk::Size | Chunk::SizeSpace, b' ' | b'\t') if *digits > 0 => {
                        Chunk::SizeSpace
                    }
                    (Chunk::Size | Chunk::SizeSpace, b';') if *digits > 0 => Chunk::Extension,
                    (Chunk::Size | Chunk::SizeSpace | Chunk::Extension, b'\r') if *digits > 0 => {
                        Chunk::SizeLf
                    }
                    (Chunk::Extension, b) if b != b'\n' => {
                        *line += 1;
                        if *line > MAX_CHUNK_LINE {
                            return Err(H1Error::Chunked("chunk extensions too long"));
                        }
                        Chunk::Extension
                    }
                    (Chunk::SizeLf, b'\n') => {
                        *digits = 0;
                        *line = 0;
                        if *size == 0 {
                            Chunk::TrailerStart
                        } else {
                            Chunk::Data
                        }
                    }
                    (Chunk::DataCr, b'\r') => Chunk::DataLf,
                    (Chunk::DataLf, b'\n') => Chunk::Size,
                    (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                    (Chunk::TrailerStart | Chunk::Trailer, b) if b != b'\r' && b != b'\n' => {
                        *trailer += 1;
                        if *trailer > MAX_TRAILER_BYTES {
                            return Err(H1Error::Chunked("trailers too large"));
                        }
                        Chunk::Trailer
                    }
                    (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                    (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                    (Chunk::EndLf, b'\n') => Chunk::Done,
                    _ => return Err(H1Error::Chunked("unexpected byte")),
                };
            },
        }
    }

    /// The connection ended (read returned 0): fine only for a close-delimited body.
    ///
    /// # Errors
    /// [`H1Error::Incomplete`] when the framing expected more.
    pub fn eof(&mut self) -> Result<(), H1Error> {
        match self.kind {
            Reader::Close | Reader::Done => {
                self.kind = Reader::Done;
                Ok(())
            }
            Reader::Length(_) | Reader::Chunked { .. } => Err(H1Error::Incomplete),
        }
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b";x\r\n",
            b"5\nhello",
            b"fffffffffffffffff\r\n",
        ] {
            let mut reader = BodyReader::new(BodyKind::Chunked);
            let mut buf = BytesMut::from(bad);
            let mut failed = false;
            for _ in 0..10 {
                match reader.decode(&mut buf) {
                    Err(_) => {
                        failed = true;
                        break;
                    }
                    Ok(Decoded::NeedMore | Decoded::Done) => break,
                    Ok(Decoded::Data(_)) => {}
                }
            }
            assert!(failed, "{:?}", String::from_utf8_lossy(bad));
        }
        let mut reader = BodyReader::new(BodyKind::Chunked);
        let mut long = BytesMut::from(&b"5;"[..]);
        long.extend_from_slice(&vec![b'x'; MAX_CHUNK_LINE + 1]);
        assert!(reader.decode(&mut long).is_err());
    }
}
