//! `strata chat`, the terminal client, driven through its standard input: it resumes a room
//! where it left it, gives up at once (with the server's reason) when the server refuses.

use std::io::Write;
use std::time::Duration;

use strata_chat::client::{ChatClient, Event, ws_url};
use strata_chat::protocol::{ClientFrame, ServerFrame};

use crate::harness::{Process, TempDir, Up, run_to_exit, spawn_up, strata};

/// Registers a customer and returns their id and token.
async fn customer(up: &Up, email: &str) -> (i64, String) {
    let client = reqwest::Client::new();
    let token = up.customer(&client, email, "correct horse battery").await;
    (up.user_id(&client, &token).await, token)
}

/// Sends `body` to `room` with the library client and waits for its acknowledgement.
async fn say(up: &Up, token: &str, room: &str, body: &str) {
    let url = ws_url(&up.url(""), Some(token), Some(room), None);
    let mut client = ChatClient::connect(&url).await.unwrap();
    client
        .send(&ClientFrame::Send {
            room: room.to_owned(),
            client_id: uuid::Uuid::new_v4().simple().to_string(),
            body: body.to_owned(),
        })
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
            Ok(Ok(Event::Frame(ServerFrame::Ack { .. }))) => break,
            Ok(Ok(Event::Closed(code))) => panic!("closed: {code:?}"),
            Ok(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    client.close().await;
}

/// `strata chat` in `room`, its state under `state`, until it has printed `needle`; then
/// `/quit`. Returns its stdout and stderr.
async fn chat_until(
    up: &Up,
    token: &str,
    room: &str,
    state: &TempDir,
    extra: &[&str],
    needle: &str,
) -> (String, String) {
    let base = up.url("");
    let mut args = vec!["chat", "--room", room, "--url", &base];
    args.extend_from_slice(extra);
    let mut command = strata(&args);
    command
        .env("STRATA_CHAT_TOKEN", token)
        .env("XDG_STATE_HOME", state.path());
    let (mut process, mut stdin) = Process::spawn_with_stdin(command);
    let found = process
        .wait_for_stdout_or_exit(needle, Duration::from_secs(20))
        .await;
    assert!(found.is_ok(), "{}\n{}", process.stdout(), process.stderr());
    writeln!(stdin, "/quit").unwrap();
    let status = process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", process.stderr());
    (process.stdout(), process.stderr())
}

#[tokio::test]
async fn rejoining_a_room_shows_what_was_said_meanwhile() {
    let up = spawn_up(&["--api", "1", "--chat", "1"]).await;
    let (id, token) = customer(&up, "resume@example.test").await;
    let room = format!("support-{id}");
    let state = TempDir::new("chat-state");
    say(&up, &token, &room, "first").await;
    // A first visit shows only new messages: "first" is older.
    let base = up.url("");
    let mut command = strata(&["chat", "--room", &room, "--url", &base]);
    command
        .env("STRATA_CHAT_TOKEN", &token)
        .env("XDG_STATE_HOME", state.path());
    let (mut process, mut stdin) = Process::spawn_with_stdin(command);
    process
        .wait_for_stdout_or_exit("-- joined", Duration::from_secs(20))
        .await
        .unwrap();
    writeln!(stdin, "hello from the terminal").unwrap();
    process
        .wait_for_stdout_or_exit("hello from the terminal", Duration::from_secs(20))
        .await
        .unwrap();
    writeln!(stdin, "/quit").unwrap();
    assert!(process.wait_exit(Duration::from_secs(10)).await.is_some());

    say(&up, &token, &room, "said while you were away").await;
    let (stdout, _) = chat_until(&up, &token, &room, &state, &[], "said while you were away").await;
    assert!(!stdout.contains("hello from the terminal"), "{stdout}");
    // People by their display names (the harness registers customers with their email as
    // name), not by id.
    assert!(
        stdout.contains("resume@example.test: said while you were away"),
        "{stdout}"
    );
    assert!(!stdout.contains(&format!("user {id}")), "{stdout}");

    // `--after` chooses where to start.
    let (stdout, _) = chat_until(&up, &token, &room, &state, &["--after", "0"], "first").await;
    assert!(stdout.contains("said while you were away"), "{stdout}");
}

#[tokio::test]
async fn a_refused_room_ends_at_once_with_the_servers_reason() {
    let up = spawn_up(&["--api", "1", "--chat", "1"]).await;
    let (id, token) = customer(&up, "refused@example.test").await;
    let other = format!("support-{}", id + 1000);
    let mut command = strata(&["chat", "--room", &other, "--url", &up.url("")]);
    command.env("STRATA_CHAT_TOKEN", &token);
    let (status, _, stderr) = run_to_exit(command).await;
    assert!(!status.success(), "{stderr}");
    assert_eq!(stderr.matches("strata: error").count(), 1, "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!stderr.contains("HTTP error: 403 Forbidden"), "{stderr}");
    // The server's own explanation, from its JSON body.
    assert!(
        stderr.contains(&format!("you may not read {other}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_a_room_a_customer_joins_their_support_room_and_an_admin_is_asked_for_one() {
    let up = crate::harness::spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[
            ("STRATA_ADMIN_EMAIL", "boss@example.test"),
            ("STRATA_ADMIN_PASSWORD", "correct horse battery"),
        ],
    )
    .await;
    let (id, token) = customer(&up, "noroom@example.test").await;
    let base = up.url("");
    let mut command = strata(&["chat", "--url", &base]);
    command.env("STRATA_CHAT_TOKEN", &token);
    let (mut process, mut stdin) = Process::spawn_with_stdin(command);
    let joined = format!("-- joined support-{id}");
    let found = process
        .wait_for_stdout_or_exit(&joined, Duration::from_secs(20))
        .await;
    assert!(found.is_ok(), "{}\n{}", process.stdout(), process.stderr());
    writeln!(stdin, "/quit").unwrap();
    assert!(process.wait_exit(Duration::from_secs(10)).await.is_some());

    let client = reqwest::Client::new();
    let admin = up
        .token(&client, "boss@example.test", "correct horse battery")
        .await;
    let mut command = strata(&["chat", "--url", &base]);
    command.env("STRATA_CHAT_TOKEN", &admin);
    let (status, stdout, stderr) = run_to_exit(command).await;
    assert!(!status.success(), "{stdout}{stderr}");
    assert_eq!(stderr.matches("strata: error").count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "an account with the admin role has no room of its own: name one with --room"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_websocket_over_an_http2_stream_reaches_the_chat() {
    use futures_util::{SinkExt, StreamExt};
    use http_body_util::Empty;
    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let up = spawn_up(&["--api", "1", "--chat", "1"]).await;
    let (id, token) = customer(&up, "h2@example.test").await;
    let room = format!("support-{id}");
    let tcp = tokio::net::TcpStream::connect(up.public).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    // A first exchange: the gateway's SETTINGS, which allow the extended CONNECT, are in.
    let first = hyper::Request::get(up.url("/api/v1/products/7"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(first).await.unwrap().status(), 200);

    let url = ws_url(&up.url(""), Some(&token), Some(&room), None).replacen("ws://", "http://", 1);
    let mut connect = hyper::Request::connect(url)
        .header("sec-websocket-version", "13")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let protocol = hyper::ext::Protocol::from_static("websocket");
    connect.extensions_mut().insert(protocol);
    let mut response = sender.send_request(connect).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    let stream = hyper::upgrade::on(&mut response).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;

    let send = ClientFrame::Send {
        room: room.clone(),
        client_id: uuid::Uuid::new_v4().simple().to_string(),
        body: "over HTTP/2".to_owned(),
    };
    let text = serde_json::to_string(&send).unwrap();
    ws.send(Message::text(text)).await.unwrap();
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let text = match next {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no frame: {other:?}"),
        };
        match serde_json::from_str::<ServerFrame>(text.as_str()).unwrap() {
            ServerFrame::Ack { .. } => acked = true,
            ServerFrame::Message { body, .. } => delivered |= body == "over HTTP/2",
            _ => {}
        }
    }
    ws.close(None).await.unwrap();
}
