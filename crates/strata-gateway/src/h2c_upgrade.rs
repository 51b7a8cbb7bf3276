//! HTTP/2 by upgrade from HTTP/1.1 over cleartext (`Upgrade: h2c`, RFC 7540 §3.2), which
//! hyper's server does not do: the gateway answers `101 Switching Protocols` and serves the
//! connection with hyper's HTTP/2 server, the upgrading request answered as stream 1.
//!
//! hyper's (and the `h2` crate's) server only learns of streams from frames, so the
//! upgrading request becomes one: the client's bytes after the `101` pass through a
//! [`Spliced`] reader that, right after the client's preface and first `SETTINGS` frame,
//! inserts a `HEADERS` frame for stream 1 (with `END_STREAM`: the request has no body) carrying
//! the request's head. Its header block uses HPACK literals that never enter the dynamic table,
//! so the client's own header blocks decode as the client encoded them. The settings of the
//! request's `HTTP2-Settings` header go first in that `SETTINGS` frame, so they apply before
//! the client's own (which override them) and the client gets the one acknowledgement it
//! expects.
//!
//! Upgraded only: requests with no body (RFC 7540 lets a server ignore `Upgrade`, and a body
//! would have to be read whole over HTTP/1.1 first), with exactly one valid `HTTP2-Settings`
//! named in `Connection`, over cleartext (`h2c` never over TLS), whose head fits one frame.
//! Any other request asking for `h2c` is served over HTTP/1.1 as if it had not.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, HOST, UPGRADE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Body;
use tokio::io::{AsyncRead, ReadBuf};

use crate::http2::PREFACE;
use crate::proxy::headers;

/// The request header carrying the client's HTTP/2 settings, base64url-encoded.
pub const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Largest header block inserted as stream 1: one frame of the smallest size a server allows
/// (`SETTINGS_MAX_FRAME_SIZE`'s initial value, 16 KiB).
const MAX_BLOCK: usize = 16 * 1024;

/// Frame types and flags used here (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// An accepted upgrade: what the HTTP/2 connection must start from.
#[derive(Debug)]
pub struct Upgrade {
    /// The `HTTP2-Settings` payload (settings parameters, 6 bytes each).
    settings: Bytes,
    /// The header block of the upgrading request, as stream 1.
    block: Bytes,
}

impl Upgrade {
    /// The upgrade `request` asks for, when the gateway accepts it (see the module docs);
    /// `None` to serve it over HTTP/1.1.
    pub fn accept<B: Body>(request: &Request<B>, tls: bool) -> Option<Upgrade> {
        if tls || request.version() != Version::HTTP_11 {
            return None;
        }
        let headers = request.headers();
        let asks = headers
            .get_all(UPGRADE)
            .iter()
            .flat_map(|v| headers::connection_value_tokens(v.as_bytes()))
            .any(|t| t.eq_ignore_ascii_case(b"h2c"));
        if !asks {
            return None;
        }
        let named = headers::connection_tokens(headers);
        let names = |token: &[u8]| named.iter().any(|n| n.eq_ignore_ascii_case(token));
        if !names(b"upgrade") || !names(b"http2-settings") {
            return None;
        }
        let mut values = headers.get_all(HTTP2_SETTINGS).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let settings = base64url(value.as_bytes()).filter(|s| s.len() % 6 == 0)?;
        let body = request.body();
        if !body.is_end_stream() && body.size_hint().exact() != Some(0) {
            return None;
        }
        if headers.contains_key(http::header::TRANSFER_ENCODING) {
            return None;
        }
        let block = header_block(request)?;
        Some(Upgrade {
            settings: settings.into(),
            block,
        })
    }

    /// Forgets an `Upgrade: h2c` the gateway did not accept, so the request goes on as an
    /// ordinary one: `h2c` concerns the client's connection to the gateway, never an instance.
    /// An `Upgrade` that offers anything else as well is left for the proxy.
    pub fn decline<B>(request: &mut Request<B>) {
        let only_h2c = {
            let mut offers = request
                .headers()
                .get_all(UPGRADE)
                .iter()
                .flat_map(|v| headers::connection_value_tokens(v.as_bytes()))
                .peekable();
            offers.peek().is_some() && offers.all(|t| t.eq_ignore_ascii_case(b"h2c"))
        };
        if only_h2c {
            request.headers_mut().remove(UPGRADE);
        }
    }

    /// The `101` that accepts it.
    pub fn switching<B>(body: B) -> Response<B> {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        response
    }

    /// The client's bytes after the `101`, as an HTTP/2 server must read them (see the module
    /// docs).
    pub fn splice<I>(self, io: I) -> Spliced<I> {
        Spliced {
            io,
            upgrade: self,
            state: State::Preface,
            pending: BytesMut::new(),
            out: Bytes::new(),
        }
    }
}

/// The HPACK header block of `request` as an HTTP/2 request (RFC 9113 §8.3): its
/// pseudo-headers, then the headers that travel past a hop. `None` when it would not fit one
/// frame.
fn header_block<B>(request: &Request<B>) -> Option<Bytes> {
    let mut block = Vec::with_capacity(256);
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = match uri.authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => request.headers().get(HOST).map(HeaderValue::as_bytes),
    };
    literal(&mut block, b":method", request.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    if let Some(authority) = authority {
        literal(&mut block, b":authority", authority);
    }
    literal(&mut block, b":path", path.as_bytes());
    let named = headers::connection_tokens(request.headers());
    for (name, value) in request.headers() {
        if name == HOST || !headers::forwards(name, &named, false) {
            continue;
        }
        literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }
    (block.len() <= MAX_BLOCK).then(|| block.into())
}

/// A "literal header field without indexing, new name" (RFC 7541 §6.2.2): the decoder's
/// dynamic table is left as it was.
fn literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0x00);
    string(block, name);
    string(block, value);
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
fn string(block: &mut Vec<u8>, bytes: &[u8]) {
    integer(block, 7, 0x00, bytes.len());
    block.extend_from_slice(bytes);
}

/// An HPACK integer with an `prefix`-bit prefix, `flags` in the first byte's other bits
/// (RFC 7541 §5.1).
fn integer(block: &mut Vec<u8>, prefix: u32, flags: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        // Below `max`, which fits the prefix: the cast keeps every bit.
        block.push(flags | value as u8);
        return;
    }
    block.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        block.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    block.push(rest as u8);
}

/// Decodes base64url without padding (RFC 4648 §5), as `HTTP2-Settings` is written;
/// trailing `=` are tolerated. `None` for anything else.
fn base64url(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    let end = text.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let text = &text[..end];
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let digit = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(digit);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Where [`Spliced`] is in the client's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the 24-byte preface.
    Preface,
    /// Reading the 9-byte head of the first frame, a `SETTINGS`.
    SettingsHead,
    /// Passing this many more bytes of that frame's payload, then the stream-1 `HEADERS`.
    SettingsPayload(usize),
    /// Everything else passes as it comes.
    Through,
}

/// The client connection after an accepted upgrade, read as an HTTP/2 server must read it:
/// the upgrading request as stream 1 (see the module docs). Writes pass through.
#[derive(Debug)]
pub struct Spliced<I> {
    io: I,
    upgrade: Upgrade,
    state: State,
    /// Bytes read but not yet judged (a partial preface or frame head).
    pending: BytesMut,
    /// Bytes ready for the reader.
    out: Bytes,
}

impl<I> Spliced<I> {
    /// Follows the bytes in `pending`, moving what is ready to `out`.
    fn advance(&mut self) -> io::Result<()> {
        let mut out = BytesMut::new();
        loop {
            match self.state {
                State::Preface => {
                    if self.pending.len() < PREFACE.len() {
                        break;
                    }
                    if self.pending[..PREFACE.len()] != PREFACE[..] {
                        return Err(invalid("no HTTP/2 preface after the upgrade"));
                    }
                    out.extend_from_slice(&self.pending.split_to(PREFACE.len()));
                    self.state = State::SettingsHead;
                }
                State::SettingsHead => {
                    if self.pending.len() < 9 {
                        break;
                    }
                    let head = self.pending.split_to(9);
                    let length = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                    if head[3] != SETTINGS || head[4] & ACK != 0 || stream & 0x7fff_ffff != 0 {
                        return Err(invalid(
                            "the upgraded connection's first frame is not SETTINGS",
                        ));
                    }
                    let merged = length + self.upgrade.settings.len();
                    if merged >= 1 << 24 {
                        return Err(invalid("SETTINGS frame too large"));
                    }
                    let merged = merged.to_be_bytes();
                    out.extend_from_slice(&merged[merged.len() - 3..]);
                    out.extend_from_slice(&head[3..]);
                    out.extend_from_slice(&self.upgrade.settings);
                    self.state = State::SettingsPayload(length);
                }
                State::SettingsPayload(left) => {
                    let n = left.min(self.pending.len());
                    out.extend_from_slice(&self.pending.split_to(n));
                    if n < left {
                        self.state = State::SettingsPayload(left - n);
                        break;
                    }
                    let block = &self.upgrade.block;
                    // At most `MAX_BLOCK`: fits the 24-bit length.
                    let length = block.len().to_be_bytes();
                    out.extend_from_slice(&length[length.len() - 3..]);
                    out.put_u8(HEADERS);
                    out.put_u8(END_STREAM | END_HEADERS);
                    out.put_u32(1);
                    out.extend_from_slice(block);
                    self.state = State::Through;
                }
                State::Through => {
                    out.extend_from_slice(&self.pending.split());
                    break;
                }
            }
        }
        self.out = out.freeze();
        Ok(())
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl<I: AsyncRead + Unpin> AsyncRead for Spliced<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out.has_remaining() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Through && this.pending.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.pending.extend_from_slice(read.filled());
                    this.advance()?;
                }
            }
        }
    }
}

crate::write_through!(Spliced);

#[cfg(test)]
mod tests {
    use http_body_util::Empty;
    use tokio::io::AsyncReadExt;

    use super::*;

    fn upgrade_request() -> http::request::Builder {
        Request::get("/p?q=1")
            .header("host", "shop.example")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            // SETTINGS_MAX_CONCURRENT_STREAMS = 100, SETTINGS_INITIAL_WINDOW_SIZE = 65535.
            .header("http2-settings", "AAMAAABkAAQAAP__")
            .header("x-kept", "1")
    }

    #[test]
    fn base64url_decodes_settings() {
        assert_eq!(
            base64url(b"AAMAAABkAAQAAP__").unwrap(),
            [0, 3, 0, 0, 0, 100, 0, 4, 0, 0, 0xff, 0xff]
        );
        assert_eq!(base64url(b"").unwrap(), Vec::<u8>::new());
        assert!(base64url(b"AAMA+A").is_none());
        assert!(base64url(b"A").is_none());
    }

    #[test]
    fn hpack_integers_follow_rfc_7541() {
        // RFC 7541 C.1.1 and C.1.2: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        integer(&mut out, 5, 0, 10);
        assert_eq!(out, [10]);
        out.clear();
        integer(&mut out, 5, 0, 1337);
        assert_eq!(out, [31, 154, 10]);
    }

    #[test]
    fn only_well_formed_cleartext_requests_without_a_body_upgrade() {
        let request = upgrade_request().body(Empty::<Bytes>::new()).unwrap();
        assert!(Upgrade::accept(&request, false).is_some());
        assert!(Upgrade::accept(&request, true).is_none(), "never over TLS");
        let two_connection_headers = upgrade_request()
            .header("connection", "keep-alive")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(Upgrade::accept(&two_connection_headers, false).is_some());
        let mut no_named = upgrade_request().body(Empty::<Bytes>::new()).unwrap();
        no_named
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        assert!(Upgrade::accept(&no_named, false).is_none());
        let two = upgrade_request()
            .header("http2-settings", "")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(Upgrade::accept(&two, false).is_none());
        let websocket = upgrade_request()
            .header("upgrade", "websocket")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(
            Upgrade::accept(&websocket, false).is_some(),
            "h2c among others"
        );
        let mut bad = upgrade_request().body(Empty::<Bytes>::new()).unwrap();
        bad.headers_mut()
            .insert(HTTP2_SETTINGS, HeaderValue::from_static("AAMA"));
        assert!(Upgrade::accept(&bad, false).is_none(), "not whole settings");
    }

    #[tokio::test]
    async fn the_request_becomes_stream_1_after_the_first_settings() {
        let request = upgrade_request().body(Empty::<Bytes>::new()).unwrap();
        let upgrade = Upgrade::accept(&request, false).unwrap();
        let block = upgrade.block.clone();
        // The client's preface, an empty SETTINGS, then a PING.
        let mut client = PREFACE.to_vec();
        client.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        client.extend_from_slice(&ping);
        // Fed a byte at a time, as a slow client would.
        let (mut writer, reader) = tokio::io::duplex(1);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for byte in client {
                writer.write_all(&[byte]).await.unwrap();
            }
        });
        let mut spliced = upgrade.splice(reader);
        let mut out = Vec::new();
        spliced.read_to_end(&mut out).await.unwrap();
        let mut expected = PREFACE.to_vec();
        expected.extend_from_slice(&[0, 0, 12, SETTINGS, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 3, 0, 0, 0, 100, 0, 4, 0, 0, 0xff, 0xff]);
        let length = u8::try_from(block.len()).unwrap();
        expected.extend_from_slice(&[0, 0, length, HEADERS, END_STREAM | END_HEADERS, 0, 0, 0, 1]);
        expected.extend_from_slice(&block);
        expected.extend_from_slice(&ping);
        assert_eq!(out, expected);
        // Pseudo-headers first; hop-by-hop headers and `Host` (now `:authority`) left out.
        let text = String::from_utf8_lossy(&block);
        for kept in [
            ":method",
            "GET",
            ":authority",
            "shop.example",
            ":path",
            "/p?q=1",
            "x-kept",
        ] {
            assert!(text.contains(kept), "{kept} in {text:?}");
        }
        for dropped in ["upgrade", "http2-settings", "connection", "host"] {
            assert!(!text.contains(dropped), "{dropped} in {text:?}");
        }
    }

    #[tokio::test]
    async fn a_client_without_a_preface_is_refused() {
        let request = upgrade_request().body(Empty::<Bytes>::new()).unwrap();
        let upgrade = Upgrade::accept(&request, false).unwrap();
        let mut spliced = upgrade.splice(&b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..]);
        let mut out = Vec::new();
        let error = spliced.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
