//! WebSocket proxying: frames both ways, rooms pinned to one instance, tunnels counted as in
//! flight, closed when their instance drains, close frames passed on without a reset, and
//! tunnels kept while the gateway shuts down.

use std::time::{Duration, Instant};

use reqwest::Method;
use strata_core::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Backend, Ws, WsBackend, config, eventually, spawn_gateway, ws_connect, ws_echo, ws_recv,
};

#[tokio::test]
async fn frames_pass_both_ways_and_a_room_stays_on_its_instance() {
    let api = Backend::start("api-1").await;
    let chats = [
        WsBackend::start("chat-1").await,
        WsBackend::start("chat-2").await,
    ];
    let gateway = spawn_gateway(config(&[
        ("api", vec![api.url()]),
        ("chat", chats.iter().map(WsBackend::url).collect()),
    ]))
    .await;

    let (mut ws, name) = ws_connect(gateway.addr, "lobby").await;
    for i in 0..5 {
        let reply = ws_echo(&mut ws, &format!("message {i}")).await;
        assert_eq!(
            reply.as_deref(),
            Some(format!("{name}: message {i}").as_str())
        );
    }
    // Every member of the room lands where the room is. One at a time: tunnels count as in
    // flight, and consistent hashing's bounded load would move a key off an instance holding
    // more than its share (see the README's note on chat and bounded load).
    for _ in 0..5 {
        let (mut other, other_name) = ws_connect(gateway.addr, "lobby").await;
        assert_eq!(other_name, name);
        assert_eq!(
            ws_echo(&mut other, "hi").await.unwrap(),
            format!("{name}: hi")
        );
        other.close(None).await.unwrap();
        drop(other);
        eventually("the tunnel closed", || async {
            gateway
                .instances("chat")
                .await
                .iter()
                .map(|i| i["in_flight"].as_u64().unwrap())
                .sum::<u64>()
                == 1
        })
        .await;
    }
    // Rooms spread over the instances.
    let mut names = std::collections::HashSet::new();
    for room in 0..20 {
        names.insert(ws_connect(gateway.addr, &format!("room-{room}")).await.1);
    }
    assert_eq!(names.len(), 2, "{names:?}");

    // The open tunnel counts as in flight on its instance, and in the WebSocket gauges.
    let chat = chats.iter().find(|c| c.name == name).unwrap();
    let instance = chat.addr.to_string();
    let (_, pools) = gateway.admin_json("/admin/pools").await;
    let listed = pools["pools"][1]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == instance.as_str())
        .unwrap()
        .clone();
    assert!(listed["in_flight"].as_u64().unwrap() >= 1, "{listed}");
    assert!(listed["websockets_open"].as_i64().unwrap() >= 1, "{listed}");
    let total = gateway
        .sample(&format!(
            "strata_gateway_websockets_total{{pool=\"chat\",instance=\"{instance}\"}}"
        ))
        .await
        .unwrap();
    assert!(total >= 6.0, "{total}");

    // Plain requests on the chat route still work, and the api is untouched.
    assert_eq!(gateway.get("/api/v1/products").await.status(), 200);
    drop(ws);
}

#[tokio::test]
async fn a_refused_upgrade_comes_back_as_an_ordinary_response() {
    // A plain HTTP instance answers the upgrade request with a 200: passed on as such.
    let chat = Backend::start("chat-plain").await;
    let gateway = spawn_gateway(config(&[
        ("api", vec![chat.url()]),
        ("chat", vec![chat.url()]),
    ]))
    .await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"GET /api/v1/chat/ws?room=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    // Read until the body is in (the connection closes after it).
    let mut response = String::new();
    let mut buf = [0u8; 4096];
    while !response.contains("hello from") {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {response}");
        response.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from chat-plain"), "{response}");
    // The instance saw the upgrade headers.
    let seen = chat.seen();
    assert_eq!(seen[0].headers["upgrade"], "websocket");
    assert_eq!(seen[0].headers["connection"], "upgrade");
}

#[tokio::test]
async fn draining_an_instance_closes_its_websockets_after_the_drain_timeout() {
    let api = Backend::start("api-1").await;
    let chats = [
        WsBackend::start("chat-1").await,
        WsBackend::start("chat-2").await,
    ];
    let mut config = config(&[
        ("api", vec![api.url()]),
        ("chat", chats.iter().map(WsBackend::url).collect()),
    ]);
    config.drain_timeout_ms = 400;
    let gateway = spawn_gateway(config).await;

    let (mut ws, name) = ws_connect(gateway.addr, "support").await;
    let drained = chats.iter().find(|c| c.name == name).unwrap();
    let (status, body) = gateway
        .admin(
            Method::POST,
            &format!("/admin/pools/chat/instances/{}/drain", drained.addr),
            None,
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["draining"], true);
    let started = Instant::now();
    // Until the deadline the tunnel keeps working…
    assert_eq!(
        ws_echo(&mut ws, "still here").await.unwrap(),
        format!("{name}: still here")
    );
    // …then it is closed.
    assert_eq!(ws_recv(&mut ws).await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    // The room moves to the other instance.
    let (_, moved) = ws_connect(gateway.addr, "support").await;
    assert_ne!(moved, name);
    eventually("the drained instance has nothing in flight", || async {
        gateway
            .instances("chat")
            .await
            .iter()
            .any(|i| i["address"] == drained.addr.to_string().as_str() && i["in_flight"] == 0)
    })
    .await;
}

/// A WebSocket instance on its own: greets each client with `welcome from <name>`, and closes
/// every connection with `code` once `close` is cancelled. With `careless`, it closes on a
/// frame over 16 KiB with 1009 and drops the connection with the client's input unread, as a
/// careless server does: the kernel then resets it.
async fn closing_backend(name: &str, careless: bool, close: Shutdown, code: u16) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Error, Message};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (name, close) = (name.clone(), close.clone());
            tokio::spawn(async move {
                let config = WebSocketConfig::default()
                    .max_frame_size(Some(16 * 1024))
                    .max_message_size(Some(16 * 1024));
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                let _ = ws.send(Message::text(format!("welcome from {name}"))).await;
                let frame = |code: u16| {
                    Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "".into(),
                    }))
                };
                loop {
                    tokio::select! {
                        () = close.cancelled() => {
                            let _ = ws.send(frame(code)).await;
                            // The client's answer ends it (tungstenite closes then).
                            while let Some(Ok(_)) = ws.next().await {}
                            return;
                        }
                        next = ws.next() => match next {
                            Some(Err(Error::Capacity(_))) if careless => {
                                let _ = ws.send(frame(1009)).await;
                                return;
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// How the WebSocket ended, read by a client still sending: the code of the close frame it
/// got (`None` without one), and whether the TCP connection then ended cleanly (EOF) rather
/// than with a reset. The client sends `first`, then up to `more` small frames, stopping when
/// a send is refused (once it has the close).
async fn ending_while_sending(ws: Ws, first: String, more: usize) -> (Option<u16>, bool) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        if tx.send(Message::text(first)).await.is_err() {
            return;
        }
        for _ in 0..more {
            if tx.send(Message::text("small")).await.is_err() {
                return;
            }
        }
    });
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut code = None;
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(frame))) => {
                    code = Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                None => return (code, true),
                Some(Err(_)) => return (code, false),
            }
        }
    })
    .await
    .expect("the WebSocket ended within 5 s");
    sender.abort();
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_reaches_the_client_even_when_the_instance_resets_after_it() {
    let api = Backend::start("api-1").await;
    let chat = closing_backend("chat-careless", true, Shutdown::new(), 1000).await;
    let gateway = spawn_gateway(config(&[("api", vec![api.url()]), ("chat", vec![chat])])).await;
    for round in 0..3 {
        let (ws, name) = ws_connect(gateway.addr, &format!("room-{round}")).await;
        assert_eq!(name, "chat-careless");
        let ended = ending_while_sending(ws, "y".repeat(20 * 1024), 200).await;
        assert_eq!(ended, (Some(1009), true), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutting_down_gateway_keeps_its_websockets_until_the_instance_closes_them() {
    let api = Backend::start("api-1").await;
    let close = Shutdown::new();
    let chat = closing_backend("chat-1", false, close.clone(), 4012).await;
    let mut config = config(&[("api", vec![api.url()]), ("chat", vec![chat])]);
    // Workers on threads of their own, each with its own runtime, as in `strata up`.
    config.workers = 2;
    config.drain_timeout_ms = 10_000;
    let mut gateway = spawn_gateway(config).await;
    let (ws, _) = ws_connect(gateway.addr, "lobby").await;

    gateway.shutdown.cancel();
    // Past the gateway's own drain (a close grace of half a second, and no request in
    // flight): the tunnel is all that is left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    close.cancel();
    assert_eq!(
        ending_while_sending(ws, "still here".into(), 0).await,
        (Some(4012), true)
    );
    let task = gateway.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the gateway stops once its tunnels are closed")
        .unwrap()
        .unwrap();
}
