//! One keep-alive HTTP/1.1 connection, driven by the task that sends on it: write a request
//! serialized in advance, read the response head (httparse) and its body (length, chunked or
//! to the end of the connection).
//!
//! Why not hyper's client: a load generator must cost its target as little CPU as possible on
//! a shared machine. hyper's connection runs in a task of its own, reached through a channel
//! and answering through another; here one task writes and reads its own socket, as wrk does,
//! which halves the client's work per request on loopback.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::Failure;

/// Most response header fields parsed; a response with more is a protocol failure.
const MAX_HEADERS: usize = 64;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer reserved per read.
const READ_CHUNK: usize = 16 * 1024;

/// What the report needs of a response.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The value of the instance header, when present.
    pub(crate) instance: Option<Bytes>,
    /// The body, when it was asked for.
    pub(crate) body: Option<Bytes>,
    /// The `Set-Cookie` values, kept with the body (a setup reads them, a load run does not).
    pub(crate) cookies: Vec<Bytes>,
}

/// A request serialized once, sent as is.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub(crate) bytes: Bytes,
    /// `HEAD` responses carry no body whatever their headers say.
    pub(crate) head: bool,
}

/// Serializes a request: request line, `Host`, `User-Agent`, the given headers, and
/// `Content-Length` with the body when there is one.
pub(crate) fn serialize(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Wire {
    let mut out = Vec::with_capacity(128 + body.map_or(0, <[u8]>::len));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        concat!("\r\nuser-agent: strata-lab/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    for (name, value) in headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("\r\ncontent-length: {}", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    Wire {
        bytes: Bytes::from(out),
        head: method.eq_ignore_ascii_case("HEAD"),
    }
}

/// An open connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Set when the last response said `Connection: close` (or ended with the connection).
    closing: bool,
}

impl Conn {
    /// Opens a TCP connection within `connect_timeout`.
    pub(crate) async fn open(addr: SocketAddr, connect_timeout: Duration) -> Result<Conn, Failure> {
        let stream = match timeout(connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(Failure::ConnectTimeout),
            Ok(Err(_)) => return Err(Failure::Connect),
            Ok(Ok(stream)) => stream,
        };
        // Requests are single small writes; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            closing: false,
        })
    }

    /// True when a request must not be sent here: the server asked to close, or has closed
    /// (or sent bytes nobody asked for) while the connection was idle. Costs no system call
    /// unless the socket has become readable.
    pub(crate) fn is_closed(&mut self) -> bool {
        if self.closing || !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // EOF, unsolicited bytes or an error: this connection is done.
            _ => true,
        }
    }

    /// Sends `wire` and reads the whole response. `instance_header` is the lowercase name of
    /// the header whose value is kept; `keep_body` keeps the body too.
    pub(crate) async fn exchange(
        &mut self,
        wire: &Wire,
        instance_header: &str,
        keep_body: bool,
    ) -> Result<Answer, Failure> {
        if let Err(e) = self.stream.write_all(&wire.bytes).await {
            self.closing = true;
            return Err(match e.kind() {
                // The server closed before the request left: it never saw it.
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failure::NotSent,
                _ => Failure::Io,
            });
        }
        let result = self
            .read_response(wire.head, instance_header, keep_body)
            .await;
        if result.is_err() {
            self.closing = true;
        }
        result
    }

    async fn read_response(
        &mut self,
        head_only: bool,
        instance_header: &str,
        keep_body: bool,
    ) -> Result<Answer, Failure> {
        loop {
            // 1xx responses (100 Continue) are skipped: the final response follows.
            let Head {
                status,
                len: head_len,
                framing,
                instance,
                cookies,
            } = loop {
                if let Some(parsed) = parse_head(&self.buf, instance_header, keep_body)? {
                    break parsed;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Failure::Protocol);
                }
                if self.fill().await? == 0 {
                    return Err(Failure::Closed);
                }
            };
            if framing.close {
                self.closing = true;
            }
            self.buf.advance(head_len);
            if (100..200).contains(&status) {
                continue;
            }
            let no_body = head_only || status == 204 || status == 304;
            let body = if no_body {
                Bytes::new()
            } else {
                self.read_body(framing.body, keep_body).await?
            };
            return Ok(Answer {
                status,
                instance,
                body: keep_body.then_some(body),
                cookies,
            });
        }
    }

    /// Reads more bytes into the buffer; 0 at the end of the connection.
    async fn fill(&mut self) -> Result<usize, Failure> {
        self.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Failure::Reset,
                io::ErrorKind::UnexpectedEof => Failure::Closed,
                _ => Failure::Io,
            }),
        }
    }

    async fn read_body(&mut self, framing: BodyFraming, keep: bool) -> Result<Bytes, Failure> {
        let body_failure = |f: Failure| {
            if f == Failure::Closed {
                Failure::Body
            } else {
                f
            }
        };
        match framing {
            BodyFraming::Length(len) => {
                while self.buf.len() < len {
                    if self.fill().await.map_err(body_failure)? == 0 {
                        return Err(Failure::Body);
                    }
                }
                if keep {
                    Ok(self.buf.split_to(len).freeze())
                } else {
                    // Dropped in place: the buffer stays unshared, so its space is reused.
                    self.buf.advance(len);
                    Ok(Bytes::new())
                }
            }
            BodyFraming::Chunked => self.read_chunked(keep).await.map_err(body_failure),
            BodyFraming::ToEnd => {
                self.closing = true;
                while self.fill().await.map_err(body_failure)? > 0 {}
                let body = self.buf.split();
                Ok(if keep { body.freeze() } else { Bytes::new() })
            }
        }
    }

    async fn read_chunked(&mut self, keep: bool) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        loop {
            let (offset, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((offset, size))) => break (offset, size),
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await? == 0 {
                            return Err(Failure::Body);
                        }
                    }
                    Err(_) => return Err(Failure::Protocol),
                }
            };
            let size = usize::try_from(size).map_err(|_| Failure::Protocol)?;
            if size == 0 {
                self.buf.advance(offset);
                // Trailers (rare) end with an empty line, as does the chunked body itself.
                loop {
                    if let Some(end) = find_crlf(&self.buf) {
                        let line_empty = end == 0;
                        self.buf.advance(end + 2);
                        if line_empty {
                            return Ok(body.freeze());
                        }
                    } else if self.fill().await? == 0 {
                        return Err(Failure::Body);
                    }
                }
            }
            // The chunk's data and its CRLF.
            while self.buf.len() < offset + size + 2 {
                if self.fill().await? == 0 {
                    return Err(Failure::Body);
                }
            }
            if keep {
                body.extend_from_slice(&self.buf[offset..offset + size]);
            }
            self.buf.advance(offset + size + 2);
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    Length(usize),
    Chunked,
    ToEnd,
}

#[derive(Debug, Clone, Copy)]
struct Framing {
    body: BodyFraming,
    close: bool,
}

/// A parsed response head.
#[derive(Debug)]
struct Head {
    status: u16,
    /// Its length in bytes, the body's start.
    len: usize,
    framing: Framing,
    instance: Option<Bytes>,
    cookies: Vec<Bytes>,
}

/// Parses a complete response head at the start of `buf`; `None` while incomplete. The
/// `Set-Cookie` values are kept when `keep_cookies`.
fn parse_head(
    buf: &[u8],
    instance_header: &str,
    keep_cookies: bool,
) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Protocol),
    };
    let status = response.code.ok_or(Failure::Protocol)?;
    let mut framing = Framing {
        body: BodyFraming::ToEnd,
        close: response.version == Some(0),
    };
    let mut instance = None;
    let mut cookies = Vec::new();
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            if framing.body != BodyFraming::Chunked {
                let len = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(Failure::Protocol)?;
                framing.body = BodyFraming::Length(len);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if header
                .value
                .split(|b| *b == b',')
                .next_back()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            {
                framing.body = BodyFraming::Chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if header
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                framing.close = true;
            }
        } else if name.eq_ignore_ascii_case(instance_header) {
            instance = Some(Bytes::copy_from_slice(header.value));
        } else if keep_cookies && name.eq_ignore_ascii_case("set-cookie") {
            cookies.push(Bytes::copy_from_slice(header.value));
        }
    }
    Ok(Some(Head {
        status,
        len: head_len,
        framing,
        instance,
        cookies,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_serialized_with_their_length() {
        let wire = serialize(
            "POST",
            "/api/v1/cart/items",
            "127.0.0.1:8080",
            &[("content-type", "application/json")],
            Some(b"{}"),
        );
        let text = std::str::from_utf8(&wire.bytes).unwrap();
        assert!(text.starts_with("POST /api/v1/cart/items HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"));
        assert!(text.ends_with("content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"));
        assert!(!wire.head);
        assert!(serialize("HEAD", "/", "h", &[], None).head);
    }

    #[test]
    fn heads_give_status_framing_and_instance() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Strata-Instance: api-2\r\nSet-Cookie: a=1; Path=/\r\n\r\nhello";
        let parsed = parse_head(head, "x-strata-instance", true)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.cookies, [&b"a=1; Path=/"[..]]);
        assert!(
            parse_head(head, "x-strata-instance", false)
                .unwrap()
                .unwrap()
                .cookies
                .is_empty()
        );
        assert_eq!((parsed.status, parsed.len), (200, head.len() - 5));
        assert_eq!(parsed.framing.body, BodyFraming::Length(5));
        assert!(!parsed.framing.close);
        assert_eq!(parsed.instance.as_deref(), Some(&b"api-2"[..]));

        let head =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        let parsed = parse_head(head, "x-i", false).unwrap().unwrap();
        assert_eq!(parsed.status, 404);
        assert_eq!(parsed.framing.body, BodyFraming::Chunked);
        assert!(parsed.framing.close && parsed.instance.is_none());

        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-", "x", false)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", "x", false).unwrap_err(),
            Failure::Protocol
        );
    }
}
