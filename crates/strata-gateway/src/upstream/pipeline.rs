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
    Body, Conn, Exchange, H1Streaming, MAX_IDLE_TRIES, Outgoing, ReadFailure, Shared, Streaming,
    current_worker,
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
    let streaming = Streaming::H1(H1Streaming {
        conn,
        reader,
        keep_alive,
        read,
    });
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
mod tests;
