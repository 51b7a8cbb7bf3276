//! The raw bytes of each client connection, judged as hyper reads them: request heads whose
//! framing an instance could read differently from the gateway (request smuggling) are marked
//! for refusal before hyper hands them to the proxy.
//!
//! hyper parses requests leniently where RFC 9112 lets a server choose, and its parsed head no
//! longer shows what was lenient: it accepts bare LF line endings, and with both
//! `Content-Length` and `Transfer-Encoding` it drops the length and reads the body as chunked.
//! An instance (or any hop behind it) that reads such a request otherwise splits the
//! connection's bytes into different requests than the gateway did. So each connection's
//! bytes pass through a [`Watched`] reader that follows the request framing (heads, then
//! `Content-Length` or chunked bodies) and queues one [`Verdict`] per head it sees; the server
//! attaches it to the request ([`Refused`] in its extensions) and the proxy answers 400 and
//! closes the connection instead of forwarding. What hyper refuses itself (differing
//! `Content-Length`s, lists, obs-fold, malformed chunk sizes and extensions) it answers 400.
//!
//! Refused here:
//! - a line of the head ending in a bare LF (RFC 9112 §2.2 lets a recipient accept it; an
//!   intermediary that does while the next hop does not is a desync);
//! - `Content-Length` together with `Transfer-Encoding` (§6.1: "ought to be handled as an
//!   error");
//! - a `Transfer-Encoding` other than exactly `chunked`: the only coding strata's services
//!   accept, so anything else (`gzip, chunked`, `chunked, chunked`, two headers) could only
//!   be read differently by someone;
//! - a `Content-Length` that is not one decimal number (lists, signs, spaces inside).
//!
//! After an upgrade request (`Upgrade`, `CONNECT`) the watcher stops: what follows is the
//! tunnel's, and a refused upgrade closes the client's connection (see `proxy::upgrade`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The refusal of one request head: why it must not be forwarded. Put in the request's
/// extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// The judgement of one request head: `None` to forward, `Some` to refuse.
pub type Verdict = Option<Refused>;

/// The verdicts of one connection's heads, in order, waiting for their requests.
#[derive(Debug, Default)]
pub struct Verdicts {
    queue: Mutex<VecDeque<Verdict>>,
}

impl Verdicts {
    /// The verdict of the next request hyper hands over (requests of one connection come in
    /// order); `None` when there is none (after an upgrade, or a head the watcher gave up on).
    pub fn next(&self) -> Verdict {
        self.lock().pop_front().flatten()
    }

    fn push(&self, verdict: Verdict) {
        self.lock().push_back(verdict);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Verdict>> {
        // Only the connection's own task uses it: never contended, never poisoned mid-update.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client connection whose reads are watched (see the module docs); writes pass through.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    scanner: Scanner,
    verdicts: Arc<Verdicts>,
}

impl<I> Watched<I> {
    /// Watches `io`, queueing verdicts in `verdicts`. Heads larger than `max_head` are left
    /// to hyper (which refuses them).
    pub fn new(io: I, max_head: usize, verdicts: Arc<Verdicts>) -> Self {
        Self {
            io,
            scanner: Scanner::new(max_head),
            verdicts,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scanner.feed(&buf.filled()[before..], &this.verdicts);
        }
        polled
    }
}

crate::write_through!(Watched);

/// Where the watcher is in the connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head (bytes kept in `Scanner::head`).
    Head,
    /// Skipping a body of this many more bytes.
    Body(u64),
    /// Reading a chunk-size line (kept in `Scanner::line`).
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Reading trailer lines until an empty one (`Scanner::line` holds the current one).
    Trailers,
    /// No longer watching: a tunnel, a refused head (the connection closes), or bytes hyper
    /// refuses itself.
    Off,
}

/// Follows the request framing of one connection's bytes.
#[derive(Debug)]
struct Scanner {
    state: State,
    head: Vec<u8>,
    line: Vec<u8>,
    max_head: usize,
}

/// Longest chunk-size or trailer line followed; hyper refuses longer extensions itself.
const MAX_LINE: usize = 64 * 1024;

impl Scanner {
    fn new(max_head: usize) -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            line: Vec::new(),
            max_head,
        }
    }

    /// Follows `bytes`, queueing a verdict for every head that ends (or is refused) in them.
    fn feed(&mut self, mut bytes: &[u8], verdicts: &Verdicts) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Off => return,
                State::Head => self.head_bytes(bytes, verdicts),
                State::Body(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                    &bytes[n..]
                }
                State::ChunkData(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - n as u64;
                    if left == 0 {
                        // The data's CRLF: a line of its own, empty when well formed.
                        self.state = State::ChunkSize;
                        self.line.clear();
                        self.line.push(b'\0');
                    } else {
                        self.state = State::ChunkData(left);
                    }
                    &bytes[n..]
                }
                State::ChunkSize | State::Trailers => self.line_bytes(bytes),
            };
        }
    }

    /// Bytes of a head: judged once its end (an empty line) arrives.
    fn head_bytes<'a>(&mut self, bytes: &'a [u8], verdicts: &Verdicts) -> &'a [u8] {
        // Empty lines before a request line are skipped (RFC 9112 §2.2), as hyper does.
        let mut bytes = bytes;
        if self.head.is_empty() {
            while let Some(rest) = bytes.strip_prefix(b"\r\n") {
                bytes = rest;
            }
            if bytes.is_empty() {
                return bytes;
            }
        }
        let start = self.head.len();
        self.head.extend_from_slice(bytes);
        // Look again from just before the new bytes, so a CRLF split across reads is seen.
        let from = start.saturating_sub(3);
        for i in from..self.head.len() {
            if self.head[i] != b'\n' {
                continue;
            }
            if i == 0 || self.head[i - 1] != b'\r' {
                self.refuse(verdicts, "a line of the request head ends in a bare LF");
                return &[];
            }
            if i >= 3 && &self.head[i - 3..=i] == b"\r\n\r\n" {
                let end = i + 1;
                let rest = &bytes[end - start..];
                let verdict = judge(&self.head[..end]);
                self.head.clear();
                match verdict {
                    Judged::Refused(why) => {
                        self.refuse(verdicts, why);
                        return &[];
                    }
                    Judged::Unknown => {
                        // hyper refuses it too: nothing more to follow.
                        self.state = State::Off;
                        return &[];
                    }
                    Judged::Forward(next) => {
                        verdicts.push(None);
                        self.state = next;
                        return rest;
                    }
                }
            }
        }
        if self.head.len() > self.max_head {
            // hyper answers 431.
            self.state = State::Off;
            self.head = Vec::new();
        }
        &[]
    }

    /// Bytes of a chunk-size or trailer line.
    fn line_bytes<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
            self.line.extend_from_slice(bytes);
            if self.line.len() > MAX_LINE {
                self.state = State::Off;
            }
            return &[];
        };
        self.line.extend_from_slice(&bytes[..end]);
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        self.state = match self.state {
            // The CRLF after chunk data (marked with a NUL): the next size line follows.
            State::ChunkSize if line == b"\0" => State::ChunkSize,
            State::ChunkSize => match chunk_size(line) {
                Some(0) => State::Trailers,
                Some(size) => State::ChunkData(size),
                // hyper refuses the body.
                None => State::Off,
            },
            State::Trailers if line.is_empty() => State::Head,
            other => other,
        };
        &bytes[end + 1..]
    }

    fn refuse(&mut self, verdicts: &Verdicts, why: &'static str) {
        verdicts.push(Some(Refused(why)));
        self.state = State::Off;
        self.head = Vec::new();
    }
}

/// What a complete head calls for.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// Forward it; the bytes after it are in this state.
    Forward(State),
    Refused(&'static str),
    /// Not a request hyper accepts: it answers 400 itself.
    Unknown,
}

/// Judges one complete head (CRLF line endings, already checked).
fn judge(head: &[u8]) -> Judged {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
        return Judged::Unknown;
    };
    let mut length: Option<u64> = None;
    let (mut has_length, mut codings, mut upgrade) = (false, Vec::new(), false);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(
                header
                    .value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|c| !c.is_empty()),
            );
            if header.value.trim_ascii().is_empty() {
                return Judged::Refused("an empty Transfer-Encoding");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            let value = header.value.trim_ascii();
            let Some(n) = decimal(value) else {
                return Judged::Refused("Content-Length is not one decimal number");
            };
            if length.is_some_and(|l| l != n) {
                return Judged::Refused("conflicting Content-Length headers");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let chunked = !codings.is_empty();
    if chunked && has_length {
        return Judged::Refused("Content-Length together with Transfer-Encoding");
    }
    if chunked && !(codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked")) {
        return Judged::Refused("Transfer-Encoding other than chunked");
    }
    if upgrade || request.method == Some("CONNECT") {
        return Judged::Forward(State::Off);
    }
    Judged::Forward(match (chunked, length) {
        (true, _) => State::ChunkSize,
        (false, Some(n)) if n > 0 => State::Body(n),
        _ => State::Head,
    })
}

/// A decimal number of digits only (no sign, no spaces, no list), within `u64`.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The size of a chunk-size line (hex digits, then optional extensions); `None` when it is
/// not one hyper accepts.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let hex = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdicts of `bytes` fed in pieces of `piece` bytes.
    fn verdicts(bytes: &[u8], piece: usize) -> Vec<Verdict> {
        let queue = Verdicts::default();
        let mut scanner = Scanner::new(64 * 1024);
        for part in bytes.chunks(piece) {
            scanner.feed(part, &queue);
        }
        queue.lock().iter().copied().collect()
    }

    #[test]
    fn pipelined_requests_with_bodies_get_one_verdict_each_however_they_are_split() {
        let bytes = b"\r\nGET /a HTTP/1.1\r\nhost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
            POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\n\n\n\n\n\r\n0\r\nx-trailer: 1\r\n\r\n\
            GET /d HTTP/1.1\r\nhost: x\r\n\r\n";
        for piece in [1, 2, 3, 7, 64, bytes.len()] {
            assert_eq!(verdicts(bytes, piece), vec![None; 4], "pieces of {piece}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let refused = |head: &str| {
            let v = verdicts(head.as_bytes(), 5);
            assert!(matches!(v.last(), Some(Some(_))), "{head:?}: {v:?}");
        };
        refused("GET / HTTP/1.1\nhost: x\n\n");
        refused("GET / HTTP/1.1\r\nhost: x\n\r\n");
        refused(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        refused(
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
        );
        refused("POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        refused(
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        refused("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\n");
        refused("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\n");
        refused("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n");
        // A smuggled second request behind the first is judged too.
        let v = verdicts(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\nGET / HTTP/1.1\nhost: x\n\n",
            4,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], None);
        assert!(v[1].is_some());
    }

    #[test]
    fn upgrades_end_the_watch() {
        let v = verdicts(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\x81\x05\nhello\n",
            3,
        );
        assert_eq!(v, vec![None]);
    }
}
