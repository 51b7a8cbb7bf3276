//! HTTP/1.1 pipelining to an instance, for requests that arrive together.
//!
//! Under load a worker's event loop wakes with several client requests ready at once. Sent
//! one per connection, each costs the gateway a write and a read and the instance a wake-up,
//! a read and a write: on loopback most of a proxied request's CPU time is these system calls
//! and the TCP work behind them, on both sides. Requests for the same instance that are ready
//! in the same turn of the loop are therefore written together on one connection, in one
//! write, and their responses read back in order, usually in one read.
//!
//! A batch forms without waiting: the first request opens it and spawns its task; requests
//! that reach the same instance before that task runs (in this worker's current turn) join
//! it; the task then closes the batch to newcomers, so the next request opens another one on
//! another connection. A batch is never held open for more requests, and a connection carries
//! one batch at a time, so a request only ever waits behind the others of its own batch.
//!
//! Only requests that are safe to pipeline take part (RFC 9112 §9.3.2): safe methods (`GET`,
//! `HEAD`, `OPTIONS`, `TRACE`) without a streamed body, and no upgrades. Anything else goes
//! alone on its own connection. At most the pool's `pipeline_depth` requests share a batch.
//!
//! # Failures
//! - A reused connection found closed before its first response starts: the batch is sent on
//!   another one (up to the same bound as a single request's stale connections).
//! - The connection ends, or the instance answers `Connection: close`, after answering part
//!   of the batch: the unanswered requests (not processed, by HTTP's rules, and safe to
//!   repeat anyway) are sent again on another connection, as long as each connection answers
//!   at least one of them, so a batch always ends. A fresh connection that answers none
//!   fails them all with [`ProxyError::Reset`], as a single request would fail, and the
//!   proxy's retry policy takes over (another instance, within the retry budget).
//! - No connection can be opened: every request gets the connect error, as a single request
//!   would.
//! - An invalid response: that request gets [`ProxyError::Protocol`], the rest are sent again
//!   on another connection (the instance's framing of this one cannot be trusted).
//!
//! # Bodies
//! A response whose body has not fully arrived with its head is handed to its request still
//! streaming, with the connection, when it is the batch's last. An earlier one is read whole
//! first when it is chunked or declares at most [`MAX_BUFFERED_BODY`] bytes; a larger
//! declared body, or one delimited by the connection's end, is handed to its request
//! streaming and the requests after it go again on another connection (the instance may then
//! answer them twice: they are safe requests). A chunked body that grows past
//! [`MAX_BUFFERED_BODY`] while read is handed over the same way, with what was read so far.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, PoisonError};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::h1::{self, BodyKind, BodyReader, Decoded, H1Error};
use super::{
    Body, Conn, Exchange, MAX_IDLE_TRIES, Outgoing, ReadFailure, Shared, Streaming, current_worker,
};
use crate::error::ProxyError;

/// Largest response body read whole ahead of the next response of its batch.
pub const MAX_BUFFERED_BODY: usize = 4 * 1024 * 1024;

/// The answer a request in a batch waits for.
pub type Reply = oneshot::Receiver<Result<Exchange, ProxyError>>;

/// Requests written together: their bytes back to back and, per request, where it ends.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    /// End of this request in [`Batch::bytes`].
    end: usize,
    head_request: bool,
    reply: oneshot::Sender<Result<Exchange, ProxyError>>,
}

impl Batch {
    fn push(&mut self, request: &Outgoing, authority: &[u8]) -> Reply {
        if request.has_host {
            self.bytes.extend_from_slice(&request.bytes);
        } else {
            self.bytes
                .extend_from_slice(&h1::insert_host(&request.bytes, authority));
        }
        let (reply, answer) = oneshot::channel();
        self.members.push(Member {
            end: self.bytes.len(),
            head_request: request.head_request,
            reply,
        });
        answer
    }
}

/// Adds `request` to the batch the calling worker is filling for this instance, opening one
/// (and spawning its task) when there is none. `None` when the open batch is full: the
/// request then goes alone.
pub fn join(shared: &Arc<Shared>, request: &Outgoing, depth: usize) -> Option<Reply> {
    let worker = current_worker() % shared.open.len();
    let mut open = shared.open[worker]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match &mut *open {
        Some(batch) if batch.members.len() >= depth => None,
        Some(batch) => Some(batch.push(request, shared.authority.as_bytes())),
        None => {
            let mut batch = Batch::default();
            let reply = batch.push(request, shared.authority.as_bytes());
            *open = Some(batch);
            drop(open);
            tokio::spawn(send(Arc::clone(shared), worker));
            Some(reply)
        }
    }
}

/// The answer to a request of a batch, once its task has read it.
pub async fn answer(reply: Reply) -> Result<Exchange, ProxyError> {
    reply.await.unwrap_or_else(|_| {
        Err(ProxyError::Reset(Box::new(io::Error::other(
            "the batch carrying the request ended without an answer",
        ))))
    })
}

/// The batch's task: closes the worker's open batch and sends it, bounded by the requests'
/// own timeout (each request has given up by then).
async fn send(shared: Arc<Shared>, worker: usize) {
    let batch = shared.open[worker]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(batch) = batch else { return };
    shared.batches.batches.inc();
    shared.batches.requests.inc_by(batch.members.len() as u64);
    // On timeout the members are dropped: each request has timed out already.
    let _ = tokio::time::timeout(shared.request_timeout, exchange(&shared, batch)).await;
}

/// How one connection's part of a batch ended.
enum Ended {
    /// Every request answered; the connection is reusable.
    Done(Conn),
    /// The last request took the connection with its streaming body.
    HandedOver,
    /// The connection ended with requests unanswered, after answering `answered` of them.
    /// `stale`: nothing at all came on a reused connection (it was closed while idle).
    Unanswered { answered: usize, stale: bool },
}

/// Writes the batch and hands out the answers, on as many connections as it takes (see the
/// module docs).
async fn exchange(shared: &Shared, batch: Batch) {
    let Batch { bytes, members } = batch;
    let mut pending: VecDeque<Member> = members.into();
    // Where the first unanswered request starts in `bytes`.
    let mut start = 0;
    let mut stale_tries = 0;
    loop {
        let idle = if stale_tries < MAX_IDLE_TRIES {
            shared.take_idle()
        } else {
            None
        };
        let mut conn = match idle {
            Some(conn) => conn,
            None => match shared.connect().await {
                Ok(conn) => conn,
                Err(error) => return fail_all(pending, &error),
            },
        };
        let reused = conn.reused;
        conn.reused = true;
        if let Err(error) = conn.stream.write_all(&bytes[start..]).await {
            if reused {
                stale_tries += 1;
                continue;
            }
            return fail_all(pending, &ProxyError::Reset(Box::new(error)));
        }
        match answer_in_order(conn, &mut pending, &mut start, reused).await {
            Ended::Done(conn) => return shared.put_back(conn),
            Ended::HandedOver => return,
            Ended::Unanswered { .. } if pending.is_empty() => return,
            Ended::Unanswered { stale: true, .. } => stale_tries += 1,
            // Progress was made: the rest go again, so a batch always ends.
            Ended::Unanswered { answered, .. } if answered > 0 => {}
            Ended::Unanswered { .. } => {
                let error =
                    ProxyError::Reset(Box::new(io::Error::from(io::ErrorKind::UnexpectedEof)));
                return fail_all(pending, &error);
            }
        }
    }
}

/// Reads the responses on `conn` in request order and answers each request, advancing
/// `start` past every answered one.
async fn answer_in_order(
    mut conn: Conn,
    pending: &mut VecDeque<Member>,
    start: &mut usize,
    reused: bool,
) -> Ended {
    let mut answered = 0;
    while let Some(next) = pending.front() {
        let head = match conn.read_head(next.head_request).await {
            Ok(head) => head,
            Err(ReadFailure::Nothing(_)) => {
                return Ended::Unanswered {
                    answered,
                    stale: answered == 0 && reused,
                };
            }
            Err(ReadFailure::Io(error)) => {
                answer_next(pending, start, Err(ProxyError::Protocol(Box::new(error))));
                return Ended::Unanswered {
                    answered: answered + 1,
                    stale: false,
                };
            }
            Err(ReadFailure::Invalid(error)) => {
                answer_next(pending, start, Err(ProxyError::Protocol(Box::new(error))));
                return Ended::Unanswered {
                    answered: answered + 1,
                    stale: false,
                };
            }
        };
        answered += 1;
        let h1::ResponseHead {
            status,
            headers,
            body,
            keep_alive,
        } = head;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let error = io::Error::other("101 Switching Protocols to a pipelined request");
            answer_next(pending, start, Err(ProxyError::Protocol(Box::new(error))));
            return Ended::Unanswered {
                answered,
                stale: false,
            };
        }
        let last = pending.len() == 1;
        let complete = conn.take_complete(body);
        // Too long to hold in memory while the batch waits (or delimited by the connection's
        // end): the request reads it from the connection itself, and the rest of the batch
        // goes again on another connection.
        let stream_alone = match body {
            BodyKind::Close => true,
            BodyKind::Length(n) => n > MAX_BUFFERED_BODY as u64,
            BodyKind::Empty | BodyKind::Chunked => false,
        };
        let body = match complete {
            Some(bytes) => Body::Complete(bytes),
            // The last request reads its body from the connection, as a request sent alone.
            None if last || stream_alone => {
                let reader = BodyReader::new(body);
                return hand_over(
                    conn,
                    reader,
                    None,
                    keep_alive && last,
                    status,
                    headers,
                    pending,
                    start,
                    answered,
                );
            }
            None => match read_whole(&mut conn, body).await {
                Ok(bytes) => Body::Complete(bytes),
                Err(Whole::TooLarge { read, reader }) => {
                    return hand_over(
                        conn,
                        reader,
                        Some(read),
                        false,
                        status,
                        headers,
                        pending,
                        start,
                        answered,
                    );
                }
                Err(Whole::Failed(error)) => {
                    answer_next(pending, start, Err(error));
                    return Ended::Unanswered {
                        answered,
                        stale: false,
                    };
                }
            },
        };
        answer_next(
            pending,
            start,
            Ok(Exchange {
                status,
                headers,
                body,
            }),
        );
        if !keep_alive {
            return Ended::Unanswered {
                answered,
                stale: false,
            };
        }
    }
    Ended::Done(conn)
}

/// Answers the first pending request (which may have given up: then nothing happens).
fn answer_next(
    pending: &mut VecDeque<Member>,
    start: &mut usize,
    answer: Result<Exchange, ProxyError>,
) {
    if let Some(member) = pending.pop_front() {
        *start = member.end;
        let _ = member.reply.send(answer);
    }
}

/// Gives the next request its response with the body still to read from `conn` (after
/// `read`, what was already taken off it), and with it the connection.
#[allow(clippy::too_many_arguments)]
fn hand_over(
    conn: Conn,
    reader: BodyReader,
    read: Option<Bytes>,
    keep_alive: bool,
    status: StatusCode,
    headers: http::HeaderMap,
    pending: &mut VecDeque<Member>,
    start: &mut usize,
    answered: usize,
) -> Ended {
    let streaming = Streaming {
        conn,
        reader,
        keep_alive,
        read,
    };
    let body = Body::Streaming(streaming);
    answer_next(
        pending,
        start,
        Ok(Exchange {
            status,
            headers,
            body,
        }),
    );
    if pending.is_empty() {
        Ended::HandedOver
    } else {
        Ended::Unanswered {
            answered,
            stale: false,
        }
    }
}

/// Why a body was not read whole.
enum Whole {
    /// It grew past [`MAX_BUFFERED_BODY`]: what was read, and the reader to go on with.
    TooLarge {
        read: Bytes,
        reader: BodyReader,
    },
    Failed(ProxyError),
}

/// Reads a body that did not arrive with its head, whole, up to [`MAX_BUFFERED_BODY`].
async fn read_whole(conn: &mut Conn, kind: BodyKind) -> Result<Bytes, Whole> {
    let invalid = |error: H1Error| Whole::Failed(ProxyError::Protocol(Box::new(error)));
    let mut reader = BodyReader::new(kind);
    let mut whole = BytesMut::new();
    loop {
        match reader.decode(&mut conn.buf).map_err(invalid)? {
            Decoded::Data(data) => {
                whole.extend_from_slice(&data);
                if whole.len() > MAX_BUFFERED_BODY {
                    let read = whole.freeze();
                    return Err(Whole::TooLarge { read, reader });
                }
            }
            Decoded::Done => return Ok(whole.freeze()),
            Decoded::NeedMore => match conn.fill().await {
                Ok(0) => {
                    reader.eof().map_err(invalid)?;
                }
                Ok(_) => {}
                Err(error) => return Err(Whole::Failed(ProxyError::Protocol(Box::new(error)))),
            },
        }
    }
}

/// Gives every pending request `error` (or its like: errors are not `Clone`).
fn fail_all(pending: VecDeque<Member>, error: &ProxyError) {
    for member in pending {
        let _ = member.reply.send(Err(like(error)));
    }
}

/// An error of the same kind as `error`, for another request.
fn like(error: &ProxyError) -> ProxyError {
    match error {
        ProxyError::Connect(e) => ProxyError::Connect(io::Error::new(e.kind(), e.to_string())),
        ProxyError::ConnectTimeout(after) => ProxyError::ConnectTimeout(*after),
        other => ProxyError::Reset(Box::new(io::Error::other(other.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    use http::{HeaderValue, Method, Request};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::limits::Limits;
    use crate::metrics::BatchCounters;
    use crate::proxy::RequestBody;
    use crate::upstream::Upstream;

    /// What a scripted instance does on one connection, in order.
    enum Step {
        /// Reads until this many more request heads have arrived.
        Read(usize),
        /// Writes these bytes.
        Write(Vec<u8>),
    }

    /// The request lines each connection of a scripted instance received, in order.
    type Received = Arc<Mutex<Vec<Vec<String>>>>;

    /// An instance that follows `scripts[n]` on its n-th connection, then closes it (or keeps
    /// it open and silent when the script ends with a read that never completes).
    async fn scripted(scripts: Vec<Vec<Step>>) -> (SocketAddr, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::default();
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            for script in scripts {
                let (mut stream, _) = listener.accept().await.unwrap();
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(Vec::new());
                    log.len() - 1
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for step in script {
                        match step {
                            Step::Read(mut count) => {
                                while count > 0 {
                                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                                    {
                                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                                        let line = String::from_utf8_lossy(&head)
                                            .lines()
                                            .next()
                                            .unwrap_or_default()
                                            .to_owned();
                                        log.lock().unwrap()[index].push(line);
                                        count -= 1;
                                        continue;
                                    }
                                    let mut chunk = [0u8; 4096];
                                    match stream.read(&mut chunk).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                    }
                                }
                            }
                            Step::Write(bytes) => stream.write_all(&bytes).await.unwrap(),
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    /// An instance that answers every request with its path as the body, all requests found
    /// in one read answered in one write, keeping its connections open.
    async fn echoing() -> (SocketAddr, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::default();
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(Vec::new());
                    log.len() - 1
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        let mut answers = Vec::new();
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            let line = String::from_utf8_lossy(&head)
                                .lines()
                                .next()
                                .unwrap_or_default()
                                .to_owned();
                            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                            answers.extend(ok(&path));
                            log.lock().unwrap()[index].push(line);
                        }
                        if stream.write_all(&answers).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    /// `work`, or a failed test after 10 s (a batch left waiting).
    async fn within<F: std::future::Future>(work: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .expect("the exchange finished")
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn get(method: Method, path: &str) -> Outgoing {
        let (head, ()) = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "shop.example")
            .body(())
            .unwrap()
            .into_parts();
        Outgoing::new(
            &head,
            &HeaderValue::from_static("192.0.2.1"),
            false,
            RequestBody::Empty,
            true,
            false,
        )
    }

    /// Sends a `GET` for each of `paths` at once, as requests that reach a worker together.
    async fn send_together<const N: usize>(
        upstream: &Upstream,
        paths: [&str; N],
        depth: usize,
    ) -> [Result<Exchange, ProxyError>; N] {
        let mut requests = paths.map(|path| get(Method::GET, path));
        let sends = requests
            .iter_mut()
            .map(|request| upstream.send(request, depth));
        let answers = within(futures_util::future::join_all(sends)).await;
        answers.try_into().expect("one answer per request")
    }

    fn upstream(addr: SocketAddr) -> Upstream {
        Upstream::new(
            "127.0.0.1",
            addr.port(),
            &Limits::default(),
            BatchCounters::default(),
        )
        .unwrap()
    }

    /// The body of a successful exchange, read whole.
    async fn body_of(upstream: &Upstream, result: Result<Exchange, ProxyError>) -> String {
        let exchange = result.expect("an answer");
        assert_eq!(exchange.status, StatusCode::OK);
        let bytes = match exchange.body {
            Body::Complete(bytes) => bytes,
            Body::Streaming(mut streaming) => {
                let mut whole = BytesMut::new();
                while let Some(data) = std::future::poll_fn(|cx| streaming.poll_data(cx)).await {
                    whole.extend_from_slice(&data.unwrap());
                }
                if let Some(conn) = streaming.into_reusable() {
                    upstream.put_back(conn);
                }
                whole.freeze()
            }
        };
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn lines(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| format!("GET {p} HTTP/1.1")).collect()
    }

    #[test]
    fn only_safe_requests_without_a_streamed_body_or_upgrade_are_pipelined() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(get(method.clone(), "/").pipelinable, "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(!get(method.clone(), "/").pipelinable, "{method}");
        }
        let (head, ()) = Request::builder().uri("/ws").body(()).unwrap().into_parts();
        let upgrade = Outgoing::new(
            &head,
            &HeaderValue::from_static("192.0.2.1"),
            false,
            RequestBody::Empty,
            true,
            true,
        );
        assert!(!upgrade.pipelinable);
    }

    #[tokio::test]
    async fn requests_sent_together_share_one_connection_and_get_their_own_answers() {
        let (addr, received) = scripted(vec![vec![
            Step::Read(3),
            Step::Write([ok("a"), ok("bb"), ok("ccc")].concat()),
            Step::Read(1),
        ]])
        .await;
        let upstream = upstream(addr);
        let [ra, rb, rc] = send_together(&upstream, ["/a", "/b", "/c"], 16).await;
        assert_eq!(body_of(&upstream, ra).await, "a");
        assert_eq!(body_of(&upstream, rb).await, "bb");
        assert_eq!(body_of(&upstream, rc).await, "ccc");
        assert_eq!(*received.lock().unwrap(), vec![lines(&["/a", "/b", "/c"])]);
        // The connection went back to the idle stack for the next batch.
        assert_eq!(upstream.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_full_batch_sends_later_requests_alone_and_depth_one_turns_it_off() {
        let (addr, received) = echoing().await;
        let upstream = upstream(addr);
        let [ra, rb, rc] = send_together(&upstream, ["/a", "/b", "/c"], 2).await;
        assert_eq!(body_of(&upstream, ra).await, "/a");
        assert_eq!(body_of(&upstream, rb).await, "/b");
        assert_eq!(body_of(&upstream, rc).await, "/c");
        // Depth 1: each request alone, on a connection of its own.
        upstream.close_idle();
        let [rd, re] = send_together(&upstream, ["/d", "/e"], 1).await;
        assert_eq!(body_of(&upstream, rd).await, "/d");
        assert_eq!(body_of(&upstream, re).await, "/e");
        let mut seen = received.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                lines(&["/a", "/b"]),
                lines(&["/c"]),
                lines(&["/d"]),
                lines(&["/e"])
            ]
        );
    }

    #[tokio::test]
    async fn requests_left_unanswered_by_a_closing_connection_go_again_on_a_fresh_one() {
        let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nb".to_vec();
        let (addr, received) = scripted(vec![
            // Answers the first, then the connection ends.
            vec![Step::Read(3), Step::Write(ok("a"))],
            // Answers the next with `Connection: close`.
            vec![Step::Read(2), Step::Write(close)],
            vec![Step::Read(1), Step::Write(ok("c"))],
        ])
        .await;
        let upstream = upstream(addr);
        let [ra, rb, rc] = send_together(&upstream, ["/a", "/b", "/c"], 16).await;
        assert_eq!(body_of(&upstream, ra).await, "a");
        assert_eq!(body_of(&upstream, rb).await, "b");
        assert_eq!(body_of(&upstream, rc).await, "c");
        assert_eq!(
            *received.lock().unwrap(),
            vec![
                lines(&["/a", "/b", "/c"]),
                lines(&["/b", "/c"]),
                lines(&["/c"])
            ]
        );
    }

    #[tokio::test]
    async fn a_connection_that_answers_nothing_fails_the_batch_as_reset() {
        let (addr, received) = scripted(vec![vec![Step::Read(2)]]).await;
        let upstream = upstream(addr);
        let [ra, rb] = send_together(&upstream, ["/a", "/b"], 16).await;
        for result in [ra, rb] {
            assert!(matches!(result, Err(ProxyError::Reset(_))), "{result:?}");
        }
        // Not sent again on the same instance: the proxy decides about another one.
        assert_eq!(*received.lock().unwrap(), vec![lines(&["/a", "/b"])]);
    }

    #[tokio::test]
    async fn a_refused_connection_fails_every_request_of_the_batch_as_not_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let upstream = upstream(addr);
        let [ra, rb] = send_together(&upstream, ["/a", "/b"], 16).await;
        for result in [ra, rb] {
            assert!(matches!(result, Err(ProxyError::Connect(_))), "{result:?}");
        }
    }

    #[tokio::test]
    async fn bodies_arriving_late_are_read_whole_in_the_batch_and_the_last_streams() {
        let big = "x".repeat(300_000);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                        3\r\nchu\r\n4\r\nnked\r\n0\r\n\r\n"
            .to_vec();
        let (addr, received) = scripted(vec![vec![
            Step::Read(4),
            Step::Write(ok(&big)),
            Step::Write(chunked),
            Step::Write(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            Step::Write(ok(&big)),
            Step::Read(1),
        ]])
        .await;
        let upstream = upstream(addr);
        let [ra, rb, rc, rd] =
            send_together(&upstream, ["/big", "/chunked", "/empty", "/last"], 16).await;
        assert_eq!(body_of(&upstream, ra).await, big);
        assert_eq!(body_of(&upstream, rb).await, "chunked");
        let empty = rc.unwrap();
        assert_eq!(empty.status, StatusCode::NO_CONTENT);
        assert!(matches!(empty.body, Body::Complete(ref b) if b.is_empty()));
        // The last response streamed: its connection came back once read to its end.
        assert!(matches!(
            rd,
            Ok(Exchange {
                body: Body::Streaming(_),
                ..
            })
        ));
        assert_eq!(body_of(&upstream, rd).await, big);
        assert_eq!(upstream.idle_count(), 1);
        assert_eq!(received.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_body_too_large_to_hold_streams_alone_and_the_rest_go_again() {
        let huge = "h".repeat(MAX_BUFFERED_BODY + 1);
        let (addr, received) = scripted(vec![
            vec![
                Step::Read(2),
                Step::Write(ok(&huge)),
                Step::Write(ok("b-late")),
            ],
            vec![Step::Read(1), Step::Write(ok("b")), Step::Read(1)],
        ])
        .await;
        let upstream = upstream(addr);
        let [ra, rb] = send_together(&upstream, ["/huge", "/b"], 16).await;
        assert_eq!(body_of(&upstream, rb).await, "b");
        assert!(matches!(
            ra,
            Ok(Exchange {
                body: Body::Streaming(_),
                ..
            })
        ));
        assert_eq!(within(body_of(&upstream, ra)).await.len(), huge.len());
        assert_eq!(
            *received.lock().unwrap(),
            vec![lines(&["/huge", "/b"]), lines(&["/b"])]
        );
        // The connection that streamed is not kept (it still holds the late answer to /b).
        assert_eq!(upstream.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_chunked_body_growing_too_large_streams_on_with_what_was_read() {
        let piece = "c".repeat(64 * 1024);
        let pieces = MAX_BUFFERED_BODY / piece.len() + 2;
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..pieces {
            chunked.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (addr, received) = scripted(vec![
            vec![
                Step::Read(2),
                Step::Write(chunked),
                Step::Write(ok("b-late")),
            ],
            vec![Step::Read(1), Step::Write(ok("b")), Step::Read(1)],
        ])
        .await;
        let upstream = upstream(addr);
        let [ra, rb] = send_together(&upstream, ["/download", "/b"], 16).await;
        let body = within(body_of(&upstream, ra)).await;
        assert_eq!(body.len(), pieces * piece.len());
        assert!(body.bytes().all(|b| b == b'c'));
        assert_eq!(body_of(&upstream, rb).await, "b");
        assert_eq!(
            *received.lock().unwrap(),
            vec![lines(&["/download", "/b"]), lines(&["/b"])]
        );
    }

    #[tokio::test]
    async fn an_invalid_response_fails_its_request_and_the_rest_go_again() {
        let (addr, received) = scripted(vec![
            vec![
                Step::Read(2),
                Step::Write(b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n".to_vec()),
            ],
            vec![Step::Read(1), Step::Write(ok("b"))],
        ])
        .await;
        let upstream = upstream(addr);
        let [ra, rb] = send_together(&upstream, ["/a", "/b"], 16).await;
        assert!(matches!(ra, Err(ProxyError::Protocol(_))), "{ra:?}");
        assert_eq!(body_of(&upstream, rb).await, "b");
        assert_eq!(
            *received.lock().unwrap(),
            vec![lines(&["/a", "/b"]), lines(&["/b"])]
        );
    }

    #[tokio::test]
    async fn a_stale_idle_connection_is_replaced_without_failing_the_batch() {
        let (addr, received) = scripted(vec![
            // Serves one request, then closes while idle.
            vec![Step::Read(1), Step::Write(ok("first"))],
            vec![Step::Read(2), Step::Write([ok("a"), ok("b")].concat())],
        ])
        .await;
        let upstream = upstream(addr);
        let mut first = get(Method::GET, "/first");
        let result = upstream.send(&mut first, 16).await;
        assert_eq!(body_of(&upstream, result).await, "first");
        assert_eq!(upstream.idle_count(), 1);
        // Let the close arrive (or not: a close racing the write is also a stale connection).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let [ra, rb] = send_together(&upstream, ["/a", "/b"], 16).await;
        assert_eq!(body_of(&upstream, ra).await, "a");
        assert_eq!(body_of(&upstream, rb).await, "b");
        assert_eq!(
            *received.lock().unwrap(),
            vec![lines(&["/first"]), lines(&["/a", "/b"])]
        );
    }
}
