//! HTTP/2 at the public listener: h2 over TLS chosen by ALPN, h2c with prior knowledge and by
//! upgrade, many streams on one connection, each limit (streams, header list, rapid reset,
//! idle, body size), `GOAWAY` on shutdown, HTTP/1.1 and WebSocket on the same listener, and
//! WebSocket over an HTTP/2 stream (RFC 8441).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strata_core::testkit;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::{
    Backend, WsBackend, config, eventually, spawn_gateway, ws_connect, ws_echo, ws_recv,
};
use crate::tls::{pki, temp_dir};

type Sender = http2::SendRequest<Full<Bytes>>;

/// An HTTP/2 client connection (hyper's) over `io`, and the task driving it, which ends when
/// the connection does.
async fn h2_over<I>(io: I) -> (Sender, JoinHandle<Result<(), hyper::Error>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    (sender, tokio::spawn(connection))
}

/// h2c with prior knowledge to `addr`.
async fn h2c(addr: std::net::SocketAddr) -> (Sender, JoinHandle<Result<(), hyper::Error>>) {
    h2_over(TcpStream::connect(addr).await.unwrap()).await
}

/// Sends `request`; its status, headers and body.
async fn send(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    let response = sender.send_request(request).await.unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        head.status,
        head.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn h2_with_prior_knowledge_is_proxied_like_http1() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let (mut sender, _connection) = h2c(gateway.addr).await;

    let (status, headers, body) = send(&mut sender, get("http://shop.example/x?q=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello from api-1");
    assert_eq!(headers["x-strata-instance"], "api-1");
    assert_eq!(headers["x-request-id"].len(), 32);
    let seen = &backend.seen()[0];
    assert_eq!(seen.path, "/x");
    // `:authority` is the request's Host.
    assert_eq!(seen.headers["host"], "shop.example");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");

    let post = Request::post("http://shop.example/echo")
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let (status, _, body) = send(&mut sender, post).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ping"));
    // Internal paths stay internal, whatever the protocol.
    let (status, _, body) = send(&mut sender, get("http://shop.example/metrics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(backend.count(), 2);
}

fn tls_connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn h2_over_tls_is_chosen_by_alpn() {
    let backend = Backend::start("api-1").await;
    let pki = pki(&temp_dir("h2-alpn"));
    let mut config = config(&[("api", vec![backend.url()])]);
    config.tls_cert = pki.cert.clone();
    config.tls_key = pki.key.clone();
    let gateway = spawn_gateway(config).await;
    let name = ServerName::try_from("localhost").unwrap();

    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let tls = tls_connector(&pki.ca, &[b"h2", b"http/1.1"])
        .connect(name.clone(), stream)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, _connection) = h2_over(tls).await;
    let (status, _, body) = send(&mut sender, get("https://localhost/secure")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello from api-1")
    );
    assert_eq!(backend.seen()[0].headers["x-forwarded-proto"], "https");
    assert_eq!(backend.seen()[0].headers["host"], "localhost");

    // A client that offers only HTTP/1.1 gets it on the same listener.
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let mut tls = tls_connector(&pki.ca, &[b"http/1.1"])
        .connect(name, stream)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /one HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A frame read by [`Raw`].
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A hand-written HTTP/2 client: frames as the test writes them, nothing enforced on its side.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// After the preface and an empty `SETTINGS` (the caller wrote what comes before, such
    /// as an upgrade), with `read` already read from the server.
    async fn start(mut stream: TcpStream, read: Vec<u8>) -> Raw {
        let mut hello = PREFACE.to_vec();
        hello.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        Raw { stream, buf: read }
    }

    async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw::start(TcpStream::connect(addr).await.unwrap(), Vec::new()).await
    }

    /// The next frame (acknowledging the server's settings on the way); `None` when the
    /// connection ended. Fails the test when nothing comes for 5 s.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let length = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + length {
                    let head: Vec<u8> = self.buf.drain(..9).collect();
                    let payload = self.buf.drain(..length).collect();
                    let frame = Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload,
                    };
                    if frame.kind == SETTINGS && frame.flags & 0x1 == 0 {
                        let _ = self
                            .stream
                            .write_all(&self::frame(SETTINGS, 0x1, 0, &[]))
                            .await;
                    }
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("a frame within 5 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames until stream `id` ends (`END_STREAM`, or reset): its frames.
    async fn until_end_of(&mut self, id: u32) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            if frame.stream != id {
                continue;
            }
            let end = frame.flags & END_STREAM != 0 && matches!(frame.kind, DATA | HEADERS)
                || frame.kind == RST_STREAM;
            frames.push(frame);
            if end {
                break;
            }
        }
        frames
    }
}

/// One frame's bytes.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = length[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a `prefix`-bit prefix (RFC 7541 §5.1).
fn hpack_integer(out: &mut Vec<u8>, prefix: u32, flags: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | u8::try_from(value).unwrap());
        return;
    }
    out.push(flags | u8::try_from(max).unwrap());
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(u8::try_from(rest & 0x7f).unwrap() | 0x80);
        rest >>= 7;
    }
    out.push(u8::try_from(rest).unwrap());
}

fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    hpack_integer(out, 7, 0, bytes.len());
    out.extend_from_slice(bytes);
}

/// The header block of `GET path` to `shop.example` with `extra` headers, in literals that
/// leave the server's table alone.
fn get_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    // `:method: GET` and `:scheme: http` from the static table (indices 2 and 6).
    let mut block = vec![0x82, 0x86];
    // `:path` (index 4) and `:authority` (index 1), literal values without indexing.
    block.push(0x04);
    hpack_string(&mut block, path.as_bytes());
    block.push(0x01);
    hpack_string(&mut block, b"shop.example");
    for (name, value) in extra {
        block.push(0x00);
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    block
}

/// The frames of a request on stream `id` with header block `block`: one `HEADERS` and as many
/// `CONTINUATION`s as 16 KiB frames need.
fn request_frames(id: u32, block: &[u8]) -> Vec<u8> {
    let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (kind, flags) = if i == 0 {
            (HEADERS, END_STREAM)
        } else {
            (CONTINUATION, 0)
        };
        out.extend(frame(
            kind,
            flags | if last { END_HEADERS } else { 0 },
            id,
            piece,
        ));
    }
    out
}

fn data_of(frames: &[Frame]) -> String {
    let data: Vec<u8> = frames
        .iter()
        .filter(|f| f.kind == DATA)
        .flat_map(|f| f.payload.clone())
        .collect();
    String::from_utf8_lossy(&data).into_owned()
}

#[tokio::test]
async fn h2c_upgrade_answers_the_upgrading_request_as_stream_1() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"GET /first?n=1 HTTP/1.1\r\nHost: shop.example\r\nX-Kept: yes\r\n\
              Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
              HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        )
        .await
        .unwrap();
    let mut read = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the 101");
        read.extend_from_slice(&chunk[..n]);
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: h2c"), "{head}");
    let mut raw = Raw::start(stream, read[end..].to_vec()).await;

    // The upgrading request's response comes as stream 1.
    let first = raw.until_end_of(1).await;
    let headers = first
        .iter()
        .find(|f| f.kind == HEADERS)
        .expect("HEADERS on stream 1");
    // `:status: 200` is entry 8 of HPACK's static table.
    assert_eq!(headers.payload[0], 0x88, "{first:?}");
    assert_eq!(data_of(&first), "hello from api-1");

    // Then the connection is HTTP/2: the client's next stream is 3.
    raw.stream
        .write_all(&request_frames(3, &get_block("/second", &[])))
        .await
        .unwrap();
    let second = raw.until_end_of(3).await;
    assert_eq!(data_of(&second), "hello from api-1");

    let seen = backend.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/first");
    assert_eq!(seen[0].headers["host"], "shop.example");
    assert_eq!(seen[0].headers["x-kept"], "yes");
    for hop in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !seen[0].headers.contains_key(hop),
            "{hop} reached the instance"
        );
    }
    assert_eq!(seen[1].path, "/second");
}

#[tokio::test]
async fn an_h2c_upgrade_with_a_body_is_served_over_http1() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let response = crate::helpers::raw_exchange(
        gateway.addr,
        b"POST /echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\n\
          Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nping",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ping"), "{response}");
    // An ordinary request for the instance: the upgrade concerned the gateway only.
    let seen = &backend.seen()[0];
    assert_eq!(seen.body, "ping");
    assert!(!seen.headers.contains_key("upgrade"));
    assert!(!seen.headers.contains_key("http2-settings"));
}

#[tokio::test]
async fn many_streams_on_one_connection_are_spread_over_the_instances() {
    let backends = [
        Backend::start("api-1").await,
        Backend::start("api-2").await,
        Backend::start("api-3").await,
    ];
    let urls = backends.iter().map(Backend::url).collect();
    let gateway = spawn_gateway(config(&[("api", urls)])).await;
    let (sender, _connection) = h2c(gateway.addr).await;

    // 60 requests that each take 500 ms at the instance, all at once on one connection.
    let started = Instant::now();
    let requests = (0..60).map(|_| {
        let mut sender = sender.clone();
        async move { send(&mut sender, get("http://shop.example/slow")).await }
    });
    let responses = futures_util::future::join_all(requests).await;
    let elapsed = started.elapsed();
    for (status, _, body) in &responses {
        assert_eq!(*status, StatusCode::OK);
        assert!(body.starts_with("slow hello from api-"), "{body}");
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "the streams did not run together: {elapsed:?}"
    );
    for backend in &backends {
        assert_eq!(backend.count(), 20, "round robin over 3 instances");
    }
    assert_eq!(
        gateway.handle.accepted_per_worker(),
        [1],
        "one client connection"
    );
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.http2.max_concurrent_streams = 2;
    let gateway = spawn_gateway(config).await;
    let mut raw = Raw::connect(gateway.addr).await;
    // Wait for the server's settings (acknowledged by `next`) before opening streams.
    let settings = raw.next().await.unwrap();
    assert_eq!(settings.kind, SETTINGS);
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 2 is advertised.
    assert!(
        settings.payload.chunks(6).any(|p| p == [0, 3, 0, 0, 0, 2]),
        "{settings:?}"
    );
    let mut burst = Vec::new();
    for id in [1, 3, 5] {
        burst.extend(request_frames(id, &get_block("/slow", &[])));
    }
    raw.stream.write_all(&burst).await.unwrap();
    let refused = raw.until_end_of(5).await;
    let reset = refused.last().unwrap();
    assert_eq!(reset.kind, RST_STREAM, "{refused:?}");
    // REFUSED_STREAM (0x7): the client may send it again.
    assert_eq!(reset.payload, [0, 0, 0, 7]);
    // The two within the limit are served.
    assert_eq!(data_of(&raw.until_end_of(1).await), "slow hello from api-1");
    assert_eq!(data_of(&raw.until_end_of(3).await), "slow hello from api-1");
    assert_eq!(backend.count(), 2);
}

#[tokio::test]
async fn an_oversized_header_list_gets_431_and_the_connection_lives_on() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let mut raw = Raw::connect(gateway.addr).await;
    // 70 KiB of header list, past the 64 KiB limit.
    let big = "x".repeat(70 * 1024);
    raw.stream
        .write_all(&request_frames(1, &get_block("/big", &[("x-big", &big)])))
        .await
        .unwrap();
    let refused = raw.until_end_of(1).await;
    let headers = refused.iter().find(|f| f.kind == HEADERS);
    let reset = refused.iter().find(|f| f.kind == RST_STREAM);
    // 431, or a reset, as RFC 9113 allows. `:status` is entry 8 of HPACK's static table, and
    // "431" Huffman-coded is 0x69 0x90 0xff (3 bytes: 0x83).
    let got_431 = headers.is_some_and(|h| {
        h.payload
            .windows(5)
            .any(|w| w == [0x48, 0x83, 0x69, 0x90, 0xff])
    });
    assert!(got_431 || reset.is_some(), "{refused:?}");
    // The same connection still serves requests within the limit.
    raw.stream
        .write_all(&request_frames(
            3,
            &get_block("/small", &[("x-small", "1")]),
        ))
        .await
        .unwrap();
    assert_eq!(data_of(&raw.until_end_of(3).await), "hello from api-1");
    let seen = backend.seen();
    assert_eq!(
        seen.len(),
        1,
        "the oversized request never reached an instance"
    );
    assert_eq!(seen[0].path, "/small");
}

/// Reads frames until a `GOAWAY` and then the end of the connection (within 5 s); the
/// `GOAWAY`s' error codes.
async fn goaways_until_closed(raw: &mut Raw) -> Vec<u32> {
    let mut codes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(frame) = raw.next().await {
        if frame.kind == GOAWAY {
            codes.push(u32::from_be_bytes([
                frame.payload[4],
                frame.payload[5],
                frame.payload[6],
                frame.payload[7],
            ]));
        }
        assert!(Instant::now() < deadline, "still open after 5 s");
    }
    codes
}

#[tokio::test]
async fn a_burst_of_opened_and_reset_streams_gets_goaway() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let (mut bystander, _connection) = h2c(gateway.addr).await;

    // The `h2` crate's client, opening streams and resetting them at once, as in
    // CVE-2023-44487: 2000 of them, written in one burst (the connection's task runs once the
    // loop is done).
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    for _ in 0..2000 {
        client = match client.ready().await {
            Ok(client) => client,
            Err(_) => break,
        };
        let request = Request::get("http://shop.example/slow").body(()).unwrap();
        let Ok((_response, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the connection was closed")
        .unwrap();
    let error = ended.expect_err("closed by a GOAWAY");
    assert!(error.is_go_away(), "{error:?}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));

    // Another client's connection is not affected.
    let (status, _, _) = send(&mut bystander, get("http://shop.example/after")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_keeps_resetting_served_streams_gets_goaway() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.http2.max_reset_streams = 20;
    let gateway = spawn_gateway(config).await;
    let (mut bystander, _connection) = h2c(gateway.addr).await;

    // Each stream is reset once the gateway is serving it (the instance takes 500 ms):
    // at most 500 streams or 5 s.
    let mut raw = Raw::connect(gateway.addr).await;
    let started = Instant::now();
    let mut id = 1;
    while id < 1000 && started.elapsed() < Duration::from_secs(5) {
        let opened = raw
            .stream
            .write_all(&request_frames(id, &get_block("/slow", &[])))
            .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        // CANCEL (0x8).
        let reset = raw
            .stream
            .write_all(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes()))
            .await;
        id += 2;
        if opened.is_err() || reset.is_err() || goaway_or_closed(&mut raw).await {
            break;
        }
    }
    assert!(id < 1000, "{id} streams without a GOAWAY");
    let started = Instant::now();
    let codes = goaways_until_closed(&mut raw).await;
    assert!(!codes.is_empty(), "no GOAWAY");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed {:?} after the GOAWAY",
        started.elapsed()
    );

    let (status, _, _) = send(&mut bystander, get("http://shop.example/after")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Whether the bytes that arrived so far hold a `GOAWAY`, or the connection ended (what was
/// read stays for [`Raw::next`]).
async fn goaway_or_closed(raw: &mut Raw) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(Duration::from_millis(1), raw.stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => return true,
        Ok(Ok(n)) => raw.buf.extend_from_slice(&chunk[..n]),
        Err(_) => {}
    }
    let mut at = 0;
    while raw.buf.len() >= at + 9 {
        if raw.buf[at + 3] == GOAWAY {
            return true;
        }
        let length = usize::from(raw.buf[at]) << 16
            | usize::from(raw.buf[at + 1]) << 8
            | usize::from(raw.buf[at + 2]);
        at += 9 + length;
    }
    false
}

#[tokio::test]
async fn idle_h2_connections_get_goaway() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.http2.idle_timeout_ms = 300;
    let gateway = spawn_gateway(config).await;
    let (mut sender, connection) = h2c(gateway.addr).await;
    let (status, _, _) = send(&mut sender, get("http://shop.example/x")).await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed when idle");
    assert!(ended.unwrap().is_ok(), "a graceful GOAWAY");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A connection busy with a stream longer than the idle timeout is not idle.
    let (mut sender, _connection) = h2c(gateway.addr).await;
    let (status, _, _) = send(&mut sender, get("http://shop.example/slow")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn h2_bodies_over_the_limit_get_413() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.max_body_bytes = 10;
    let gateway = spawn_gateway(config).await;
    let (mut sender, _connection) = h2c(gateway.addr).await;
    let post = Request::post("http://shop.example/echo")
        .body(Full::new(Bytes::from_static(b"more than ten bytes")))
        .unwrap();
    let (status, headers, body) = send(&mut sender, post).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["error"]["code"].is_string(), "{body}");
    assert_eq!(backend.count(), 0);
    // The connection serves the next request.
    let (status, _, _) = send(&mut sender, get("http://shop.example/x")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_sends_goaway_and_open_streams_finish() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let (sender, connection) = h2c(gateway.addr).await;
    let mut slow = sender.clone();
    let in_flight =
        tokio::spawn(async move { send(&mut slow, get("http://shop.example/slow")).await });
    crate::helpers::eventually("the request reaches the instance", || async {
        backend.count() == 1
    })
    .await;
    gateway.shutdown.cancel();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "slow hello from api-1")
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the connection ends after GOAWAY");
    assert!(ended.unwrap().is_ok(), "a graceful GOAWAY");
}

#[tokio::test]
async fn http1_and_websocket_share_the_listener_with_h2() {
    let backend = Backend::start("api-1").await;
    let chat = WsBackend::start("chat-1").await;
    let gateway = spawn_gateway(config(&[
        ("api", vec![backend.url()]),
        ("chat", vec![chat.url()]),
    ]))
    .await;
    let (mut sender, _connection) = h2c(gateway.addr).await;
    let (status, _, _) = send(&mut sender, get("http://shop.example/h2")).await;
    assert_eq!(status, StatusCode::OK);

    let response = gateway.get("/h1").await;
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.text().await.unwrap(), "hello from api-1");

    let (mut ws, name) = ws_connect(gateway.addr, "lobby").await;
    assert_eq!(name, "chat-1");
    assert_eq!(ws_echo(&mut ws, "hi").await.as_deref(), Some("chat-1: hi"));
    let paths: Vec<String> = backend.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/h2", "/h1"]);
}

/// h2c to `addr` after a first exchange, so the gateway's SETTINGS, which allow the extended
/// `CONNECT`, are in.
async fn h2c_settled(addr: std::net::SocketAddr) -> (Sender, JoinHandle<Result<(), hyper::Error>>) {
    let (mut sender, connection) = h2c(addr).await;
    let (status, _, _) = send(&mut sender, get("http://shop.example/first")).await;
    assert_eq!(status, StatusCode::OK);
    (sender, connection)
}

/// An extended `CONNECT` (RFC 8441) for a WebSocket to the chat route, room `room`.
fn websocket_connect(room: &str) -> Request<Full<Bytes>> {
    let mut request = Request::connect(format!("http://shop.example/api/v1/chat/ws?room={room}"))
        .header("sec-websocket-version", "13")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let protocol = hyper::ext::Protocol::from_static("websocket");
    request.extensions_mut().insert(protocol);
    request
}

#[tokio::test]
async fn websocket_over_an_h2_stream_reaches_an_http1_instance() {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let backend = Backend::start("api-1").await;
    let chat = WsBackend::start("chat-1").await;
    let mut config = config(&[("api", vec![backend.url()]), ("chat", vec![chat.url()])]);
    config.http2.idle_timeout_ms = 300;
    let gateway = spawn_gateway(config).await;
    let (mut sender, connection) = h2c_settled(gateway.addr).await;

    let mut response = sender
        .send_request(websocket_connect("lobby"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "content-length",
    ] {
        assert!(
            !response.headers().contains_key(name),
            "{name}: {:?}",
            response.headers()
        );
    }
    let stream = hyper::upgrade::on(&mut response).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
    assert_eq!(
        ws_recv(&mut ws).await.as_deref(),
        Some("welcome from chat-1")
    );
    for i in 0..3 {
        let reply = ws_echo(&mut ws, &format!("message {i}")).await;
        assert_eq!(reply, Some(format!("chat-1: message {i}")));
    }
    // The instance accepted an HTTP/1.1 handshake (tungstenite checks its key and version).
    assert_eq!(chat.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The connection goes on serving requests beside the tunnel, which counts as in flight.
    let (status, _, body) = send(&mut sender, get("http://shop.example/beside")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello from api-1")
    );
    let in_flight = |instances: Vec<serde_json::Value>| instances[0]["in_flight"].as_u64();
    assert_eq!(in_flight(gateway.instances("chat").await), Some(1));
    // An open tunnel keeps its connection from counting as idle.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        ws_echo(&mut ws, "still").await.as_deref(),
        Some("chat-1: still")
    );
    let (status, _, _) = send(&mut sender, get("http://shop.example/later")).await;
    assert_eq!(status, StatusCode::OK);

    ws.close(None).await.unwrap();
    // The close handshake completes (the instance's close frame comes back), then the client
    // lets go of its stream, as a browser does; the tunnel ends with it (not after the
    // gateway's linger, which is as long as `eventually` waits).
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    });
    drained.await.expect("the close handshake completed");
    drop(ws);
    let closing = Instant::now();
    eventually("the tunnel closed", || async {
        in_flight(gateway.instances("chat").await) == Some(0)
    })
    .await;
    assert!(
        closing.elapsed() < Duration::from_secs(1),
        "the tunnel lingered {:?} after the client let go",
        closing.elapsed()
    );
    // Then the connection is idle, and gets its GOAWAY.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed when idle");
    assert!(ended.unwrap().is_ok(), "a graceful GOAWAY");
}

#[tokio::test]
async fn an_h2_websocket_the_instance_does_not_switch_gets_its_answer_or_502() {
    // An instance that answers the handshake like any request (200): over HTTP/2 that would
    // open a tunnel to a connection that never switched, so the client gets 502.
    let plain = Backend::start("plain-1").await;
    let gateway = spawn_gateway(config(&[
        ("api", vec![plain.url()]),
        ("chat", vec![plain.url()]),
    ]))
    .await;
    let (mut sender, _connection) = h2c_settled(gateway.addr).await;
    let response = sender
        .send_request(websocket_connect("lobby"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(problem["error"]["code"].is_string(), "{problem}");
    let handshake = plain.seen().into_iter().last().unwrap();
    assert_eq!(handshake.path, "/api/v1/chat/ws");

    // A pool without instances answers as it does over HTTP/1.1, and the stream only ends.
    let gateway = spawn_gateway(config(&[("api", vec![plain.url()]), ("chat", vec![])])).await;
    let (mut sender, _connection) = h2c_settled(gateway.addr).await;
    let response = sender
        .send_request(websocket_connect("lobby"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key("connection"));
    let (status, _, _) = send(&mut sender, get("http://shop.example/again")).await;
    assert_eq!(status, StatusCode::OK);
}

/// An instance served like strata's own (`strata_core::serve`): `GET /bytes/{n}` answers `n`
/// bytes of [`body_of`], `POST /echo` the request's body.
async fn bytes_instance() -> (std::net::SocketAddr, strata_core::Shutdown) {
    use axum::extract::Path;
    let router = axum::Router::new()
        .route(
            "/bytes/{n}",
            axum::routing::get(|Path(n): Path<usize>| async move { testkit::patterned_bytes(n) }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = strata_core::Shutdown::new();
    tokio::spawn(strata_core::serve::serve(
        listener,
        router,
        shutdown.clone(),
    ));
    (addr, shutdown)
}

#[test]
fn requests_and_responses_that_arrive_together_leave_the_gateway_in_a_few_writes() {
    // Client, gateway and instance on one thread of their own, so that only their writes
    // count and each side writes once everything queued for it in a turn is queued.
    const THREAD: &str = "h2-front-held";
    testkit::on_own_thread(THREAD, || held_writes_through_the_gateway(THREAD));
}

async fn held_writes_through_the_gateway(thread: &str) {
    let (instance, stop_instance) = bytes_instance().await;
    let gateway = spawn_gateway(config(&[("api", vec![format!("http://{instance}")])])).await;
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    // The client's writes held too, so that it sends what it has queued in one write.
    let (read, write) = tcp.into_split();
    let (held, outbox) = strata_core::held::Held::new(read, write);
    let (client, connection) = h2::client::handshake(held).await.unwrap();
    let driver = tokio::spawn(outbox.drive(Box::pin(connection)));
    // `GET /bytes/300`, or `POST /echo` with a body of `POSTED` bytes (in one DATA frame,
    // which the gateway forwards as one).
    const POSTED: usize = 2000;
    let send = |client: h2::client::SendRequest<Bytes>, post: bool| async move {
        let mut client = client.ready().await.unwrap();
        let request = if post {
            Request::post("http://shop.example/echo")
        } else {
            Request::get("http://shop.example/bytes/300")
        };
        let (response, mut body) = client
            .send_request(request.body(()).unwrap(), !post)
            .unwrap();
        if post {
            body.send_data(Bytes::from(testkit::patterned_bytes(POSTED)), true)
                .unwrap();
        }
        (client, response)
    };
    let read = |response: h2::client::ResponseFuture, len: usize| async move {
        let (status, body) = testkit::h2_response(response, Duration::from_secs(10)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, testkit::patterned_bytes(len))
        );
    };
    // The connections settle (SETTINGS and their acknowledgements, the instance's h2c
    // connection) on a first request.
    let (mut client, response) = send(client, false).await;
    read(response, 300).await;

    // 64 requests queued on the client's connection before its task writes them. Each
    // response's body (300 bytes or more), and each POST's body the gateway forwards (1 KiB
    // or more without vectored writes), is one the `h2` crate flushes on its own: without held
    // writes that is a write per response at the front door, and with POSTs a write per
    // request to the instance too, on top of the client's and the instance's few (66 and 72
    // writes in all without them).
    for post in [false, true] {
        let before = testkit::writes_by_threads(thread);
        let mut responses = Vec::new();
        for _ in 0..64 {
            let (next, response) = send(client, post).await;
            client = next;
            responses.push(response);
        }
        for response in responses {
            read(response, if post { POSTED } else { 300 }).await;
        }
        let writes = testkit::writes_by_threads(thread) - before;
        // (With POSTs, flow control adds a few: 128 KB is more than a connection's window.)
        assert!(
            (1..=32).contains(&writes),
            "{writes} writes by the client, the gateway and the instance for 64 requests \
             (POST: {post}) answered together"
        );
    }
    drop(client);
    driver.abort();
    stop_instance.cancel();
}

#[tokio::test]
async fn bodies_larger_than_a_connection_holds_arrive_whole_over_h2c_and_h2_over_tls() {
    let (instance, stop_instance) = bytes_instance().await;
    let pools = [("api", vec![format!("http://{instance}")])];
    let plain = spawn_gateway(config(&pools)).await;
    let pki = pki(&temp_dir("h2-held-bodies"));
    let mut secure = config(&pools);
    secure.tls_cert = pki.cert.clone();
    secure.tls_key = pki.key.clone();
    let secure = spawn_gateway(secure).await;
    let tls = tls_connector(&pki.ca, &[b"h2"])
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(secure.addr).await.unwrap(),
        )
        .await
        .unwrap();
    let (over_tls, _tls_connection) = h2_over(tls).await;
    let (over_tcp, _tcp_connection) = h2c(plain.addr).await;
    for (mut sender, scheme) in [(over_tls, "https"), (over_tcp, "http")] {
        // Settled first (the server's SETTINGS), then several at once on the connection:
        // small ones held, large ones past the limit.
        let (status, _, body) =
            send(&mut sender, get(&format!("{scheme}://localhost/bytes/1"))).await;
        assert_eq!((status, body.as_bytes()), (StatusCode::OK, &[0u8][..]));
        let lens = [0, 300, 70_000, 3 << 20, 300];
        let answers = lens.map(|len| {
            let response = sender.send_request(get(&format!("{scheme}://localhost/bytes/{len}")));
            async move {
                let response = response.await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.into_body().collect().await.unwrap().to_bytes()
            }
        });
        let bodies = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join_all(answers),
        )
        .await
        .expect("all answered");
        for (len, body) in lens.into_iter().zip(bodies) {
            assert!(
                body == testkit::patterned_bytes(len),
                "{scheme}: a body of {len} bytes arrived altered"
            );
        }
    }
    stop_instance.cancel();
}
