//! A chat client: [`ChatClient`] speaks the protocol over one WebSocket (tests, the benchmark
//! and the CLI use it), and [`run_terminal`] is `strata chat`: a line-based terminal chat that
//! reconnects and resumes when the server asks it to (or goes away).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{ClientFrame, ServerFrame, close};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed (connect, read or write).
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something that is not a protocol frame.
    #[error("unexpected frame from the server: {0}")]
    Protocol(String),
    /// The terminal could not be read.
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// What the server sent next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A protocol frame.
    Frame(ServerFrame),
    /// The connection closed, with the server's close code when it sent one.
    Closed(Option<u16>),
}

/// One connection to a chat instance (directly or through the gateway).
pub struct ChatClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// The WebSocket URL of a chat endpoint: `base` is `http://host:port` or `ws://host:port`.
pub fn ws_url(base: &str, token: Option<&str>, room: Option<&str>, after: Option<i64>) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .or_else(|| {
            base.strip_prefix("https://")
                .map(|rest| format!("wss://{rest}"))
        })
        .unwrap_or_else(|| base.to_owned());
    let mut url = format!("{base}/api/v1/chat/ws");
    let mut sep = '?';
    for (key, value) in [
        ("room", room.map(str::to_owned)),
        ("token", token.map(str::to_owned)),
        ("after", after.map(|a| a.to_string())),
    ] {
        if let Some(value) = value {
            url.push(sep);
            url.push_str(key);
            url.push('=');
            url.push_str(&value);
            sep = '&';
        }
    }
    url
}

impl ChatClient {
    /// Connects to `url` (see [`ws_url`]) with small buffers (clients are many in a benchmark).
    ///
    /// # Errors
    /// When the connection or the upgrade fails (a 4xx from the server included).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        Ok(Self { ws })
    }

    /// Sends a frame.
    ///
    /// # Errors
    /// When the connection is gone.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends raw text (for tests of invalid frames).
    ///
    /// # Errors
    /// When the connection is gone.
    pub async fn send_raw(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next frame or the close; pings are answered on the way.
    ///
    /// # Errors
    /// When the server sends a non-protocol text frame.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text)
                        .map(Event::Frame)
                        .map_err(|e| ClientError::Protocol(format!("{e}: {text}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Event::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(Event::Closed(None)),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `strata chat`: joins `room` at `base` with `token`, prints the room's new messages and
/// sends each line typed. `/quit` (or end of input) leaves. Reconnects and resumes from the
/// last id seen when the server asks (draining, too slow) or the connection drops.
///
/// # Errors
/// When the first connection fails or the server refuses the token.
pub async fn run_terminal(base: &str, room: &str, token: &str) -> Result<(), ClientError> {
    // Standard input is read on a plain thread: lines arrive on a channel.
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let mut last: Option<i64> = None;
    let mut counter = 0u64;
    let session = uuid::Uuid::new_v4().simple().to_string();
    let mut first = true;
    loop {
        let url = ws_url(base, Some(token), Some(room), last);
        let mut client = match ChatClient::connect(&url).await {
            Ok(client) => client,
            Err(e) if first => return Err(e),
            Err(e) => {
                eprintln!("reconnect failed ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        first = false;
        loop {
            tokio::select! {
                line = lines.recv() => {
                    let Some(line) = line.transpose()? else {
                        client.close().await;
                        return Ok(());
                    };
                    let line = line.trim();
                    if line == "/quit" {
                        client.close().await;
                        return Ok(());
                    }
                    if line.is_empty() {
                        continue;
                    }
                    counter += 1;
                    let frame = ClientFrame::Send {
                        room: room.to_owned(),
                        client_id: format!("{session}-{counter}"),
                        body: line.to_owned(),
                    };
                    if client.send(&frame).await.is_err() {
                        break;
                    }
                }
                event = client.next() => match event? {
                    Event::Frame(ServerFrame::Message { id, sender, body, sent_at, .. }) => {
                        last = Some(id);
                        println!("[{sent_at}] #{id} user {sender}: {body}");
                    }
                    Event::Frame(ServerFrame::Joined { room, after }) => {
                        last.get_or_insert(after);
                        println!("-- joined {room}");
                    }
                    Event::Frame(ServerFrame::Presence { user, online, .. }) => {
                        println!("-- user {user} is {}", if online { "online" } else { "offline" });
                    }
                    Event::Frame(ServerFrame::Typing { user, .. }) => println!("-- user {user} is typing"),
                    Event::Frame(ServerFrame::Error { code, message, .. }) => eprintln!("error {code}: {message}"),
                    Event::Frame(_) => {}
                    Event::Closed(Some(close::UNAUTHORIZED)) => {
                        return Err(ClientError::Protocol("the server refused the token".into()));
                    }
                    Event::Closed(code) => {
                        eprintln!("-- connection closed ({code:?}); resuming");
                        break;
                    }
                },
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
