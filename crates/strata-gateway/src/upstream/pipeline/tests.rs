//! Unit tests of pipelining, against scripted instances.

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
                                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
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
