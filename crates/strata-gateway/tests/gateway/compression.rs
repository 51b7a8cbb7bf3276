//! Response compression: negotiated by `Accept-Encoding`, by media type and size, never twice,
//! never for HEAD, 204, 304, ranges or WebSockets; whole and streamed (chunked) bodies decode
//! to the instance's bytes, over h2c and HTTP/1.1 to the instance.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use strata_gateway::config::{GatewayConfig, UpstreamProtocol};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{TestGateway, WsBackend, config, spawn_gateway, ws_recv};

/// `n` bytes of JSON-like text that compresses well.
fn text(n: usize) -> Vec<u8> {
    let unit = br#"{"id":7,"name":"Darjeeling tea","price_cents":1250},"#;
    unit.iter().copied().cycle().take(n).collect()
}

/// A response body sent as a channel delivers it: pieces with pauses between them, no length.
struct Channel(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

type Body = Either<Full<Bytes>, Channel>;

/// The instance: HTTP/1.1 and h2c, one path per kind of answer (`n` is a body length).
async fn answer(request: Request<Incoming>) -> Response<Body> {
    let n: usize = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000);
    let full = |content_type: &'static str, body: Vec<u8>| {
        let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        response
    };
    match request.uri().path() {
        "/json" => full("application/json", text(n)),
        "/etag" => {
            let mut response = full("text/html; charset=utf-8", text(n));
            response
                .headers_mut()
                .insert("etag", HeaderValue::from_static("\"v7\""));
            response
                .headers_mut()
                .insert("accept-ranges", HeaderValue::from_static("bytes"));
            response
        }
        "/png" => full("image/png", text(n)),
        "/encoded" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&text(n)).unwrap();
            let mut response = full("application/json", encoder.finish().unwrap());
            response
                .headers_mut()
                .insert("content-encoding", HeaderValue::from_static("gzip"));
            response
        }
        "/empty" => {
            let mut response = full("application/json", Vec::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        "/unchanged" => {
            let mut response = full("application/json", Vec::new());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
                .headers_mut()
                .insert("etag", HeaderValue::from_static("\"v7\""));
            response
        }
        "/range" => {
            let mut response = full("text/plain", text(n));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                "content-range",
                HeaderValue::from_str(&format!("bytes 0-{}/99999", n - 1)).unwrap(),
            );
            response
        }
        // Four pieces 20 ms apart (chunked over HTTP/1.1), or one piece then a pause of
        // 1.5 s (`/pause`).
        path @ ("/chunked" | "/pause") => {
            let (tx, rx) = mpsc::channel(4);
            let body = text(n);
            let pause = path == "/pause";
            tokio::spawn(async move {
                if pause {
                    let _ = tx.send(Bytes::from_static(b"event: first\n\n")).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let _ = tx.send(Bytes::from(body)).await;
                    return;
                }
                for piece in body.chunks(body.len().div_ceil(4)) {
                    let _ = tx.send(Bytes::copy_from_slice(piece)).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let mut response = Response::new(Either::Right(Channel(rx)));
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            response
        }
        _ => full("text/plain", b"hello".to_vec()),
    }
}

async fn start_instance() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(|r| async { Ok::<_, Infallible>(answer(r).await) }),
                    )
                    .await;
            });
        }
    });
    addr
}

async fn gateway_with(change: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
    let addr = start_instance().await;
    let mut config = config(&[("api", vec![format!("http://{addr}")])]);
    change(&mut config);
    spawn_gateway(config).await
}

/// A GET of `path` with `accept` as `Accept-Encoding` (none when empty).
async fn get(gateway: &TestGateway, path: &str, accept: &str) -> reqwest::Response {
    let mut request = gateway.client.get(gateway.url(path));
    if !accept.is_empty() {
        request = request.header("accept-encoding", accept);
    }
    request.send().await.unwrap()
}

fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn encodings_are_negotiated_and_decode_to_the_original() {
    let gateway = gateway_with(|_| {}).await;
    for (accept, expected) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("gzip, deflate, br", Some("br")),
        ("br;q=0.5, gzip", Some("gzip")),
        ("br;q=0, *", Some("gzip")),
        ("*", Some("br")),
        ("identity", None),
        ("gzip;q=0, br;q=0", None),
        ("deflate", None),
        ("", None),
    ] {
        let response = get(&gateway, "/json?n=20000", accept).await;
        assert_eq!(response.status(), 200, "{accept}");
        assert_eq!(header(&response, "content-encoding"), expected, "{accept}");
        assert_eq!(
            header(&response, "vary"),
            Some("accept-encoding"),
            "{accept}"
        );
        // Read whole with its head, the body gets its new length; streamed, none.
        let length = header(&response, "content-length").map(str::to_owned);
        let body = response.bytes().await.unwrap();
        if let Some(length) = length {
            assert_eq!(length, body.len().to_string(), "{accept}");
        }
        match expected {
            Some(encoding) => {
                assert!(body.len() < 2000, "{accept}: {} bytes", body.len());
                assert_eq!(decode(encoding, &body), text(20_000), "{accept}");
            }
            None => assert_eq!(&body[..], &text(20_000)[..], "{accept}"),
        }
    }
}

#[tokio::test]
async fn only_large_enough_compressible_bodies_are_compressed_and_etags_weaken() {
    let gateway = gateway_with(|_| {}).await;
    let small = get(&gateway, "/json?n=1023", "gzip").await;
    assert_eq!(header(&small, "content-encoding"), None);
    assert_eq!(header(&small, "vary"), None, "never compressed: no Vary");
    assert_eq!(small.bytes().await.unwrap().len(), 1023);
    let threshold = get(&gateway, "/json?n=1024", "gzip").await;
    assert_eq!(header(&threshold, "content-encoding"), Some("gzip"));

    let png = get(&gateway, "/png", "gzip, br").await;
    assert_eq!(header(&png, "content-encoding"), None);
    assert_eq!(png.bytes().await.unwrap().len(), 4000);

    let tagged = get(&gateway, "/etag", "br").await;
    assert_eq!(header(&tagged, "content-encoding"), Some("br"));
    assert_eq!(header(&tagged, "etag"), Some("W/\"v7\""));
    assert_eq!(header(&tagged, "accept-ranges"), None);
    let identity = get(&gateway, "/etag", "").await;
    assert_eq!(
        header(&identity, "etag"),
        Some("\"v7\""),
        "unencoded: strong"
    );

    let lowered = gateway_with(|c| c.api.compression.min_bytes = 100).await;
    let response = get(&lowered, "/json?n=200", "gzip").await;
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &response.bytes().await.unwrap()), text(200));
}

#[tokio::test]
async fn encoded_bodies_head_204_304_and_ranges_pass_untouched() {
    let gateway = gateway_with(|_| {}).await;
    let encoded = get(&gateway, "/encoded", "gzip, br").await;
    assert_eq!(
        encoded
            .headers()
            .get_all("content-encoding")
            .iter()
            .collect::<Vec<_>>(),
        ["gzip"],
        "never twice"
    );
    assert_eq!(decode("gzip", &encoded.bytes().await.unwrap()), text(4000));

    let head = gateway
        .client
        .head(gateway.url("/json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-encoding"), None);
    assert_eq!(header(&head, "content-length"), Some("4000"));

    for (path, status) in [("/empty", 204), ("/unchanged", 304), ("/range", 206)] {
        let response = get(&gateway, path, "gzip").await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(header(&response, "content-encoding"), None, "{path}");
    }
    // A range request is answered as the instance chose, unencoded.
    let ranged = gateway
        .client
        .get(gateway.url("/json"))
        .header("accept-encoding", "gzip")
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&ranged, "content-encoding"), None);
}

#[tokio::test]
async fn streamed_bodies_compress_as_they_come_over_either_protocol() {
    for protocol in [UpstreamProtocol::H2c, UpstreamProtocol::Http1] {
        let gateway = gateway_with(|c| c.api.upstream_protocol = protocol).await;
        for encoding in ["gzip", "br"] {
            // Even a body shorter than `min_bytes` is compressed when its length is unknown.
            for n in [100_000, 300] {
                let response = get(&gateway, &format!("/chunked?n={n}"), encoding).await;
                assert_eq!(response.status(), 200);
                assert_eq!(header(&response, "content-encoding"), Some(encoding));
                assert_eq!(header(&response, "content-length"), None);
                assert_eq!(header(&response, "transfer-encoding"), Some("chunked"));
                assert_eq!(header(&response, "vary"), Some("accept-encoding"));
                let body = response.bytes().await.unwrap();
                assert_eq!(
                    decode(encoding, &body),
                    text(n),
                    "{protocol} {encoding} {n}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_pause_of_the_instance_flushes_what_came_before_it() {
    let gateway = gateway_with(|_| {}).await;
    let mut response = get(&gateway, "/pause?n=5000", "gzip").await;
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let started = std::time::Instant::now();
    // The first event arrives while the instance is still pausing, not 1.5 s later.
    while !decoder.get_ref().starts_with(b"event: first\n\n") {
        let piece = tokio::time::timeout(Duration::from_millis(1000), response.chunk())
            .await
            .expect("the first event within 1 s")
            .unwrap()
            .expect("more body");
        decoder.write_all(&piece).unwrap();
        decoder.flush().unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(1000));
    while let Some(piece) = response.chunk().await.unwrap() {
        decoder.write_all(&piece).unwrap();
    }
    let mut expected = b"event: first\n\n".to_vec();
    expected.extend(text(5000));
    assert_eq!(decoder.finish().unwrap(), expected);
}

#[tokio::test]
async fn compression_is_a_pool_setting() {
    let off = gateway_with(|c| c.api.compression.enabled = false).await;
    let response = get(&off, "/json", "gzip, br").await;
    assert_eq!(header(&response, "content-encoding"), None);
    assert_eq!(header(&response, "vary"), None);
    let gzip_only = gateway_with(|c| {
        c.api.compression.encodings = vec![strata_gateway::config::Encoding::Gzip];
        c.api.compression.content_types = vec!["image/*".into()];
    })
    .await;
    let response = get(&gzip_only, "/png", "br, gzip").await;
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    let response = get(&gzip_only, "/json", "br, gzip").await;
    assert_eq!(header(&response, "content-encoding"), None);
}

#[tokio::test]
async fn websockets_are_untouched() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let chat = WsBackend::start("chat-1").await;
    let mut config = config(&[("chat", vec![chat.url()])]);
    config.chat.compression.min_bytes = 0;
    let gateway = spawn_gateway(config).await;
    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut request = format!("ws://{}/api/v1/chat/ws?room=r", gateway.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("accept-encoding", HeaderValue::from_static("gzip, br"));
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert!(!response.headers().contains_key("content-encoding"));
    assert!(!response.headers().contains_key("vary"));
    assert_eq!(ws_recv(&mut ws).await.unwrap(), "welcome from chat-1");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_recv(&mut ws).await.unwrap(), "chat-1: hello");
}
