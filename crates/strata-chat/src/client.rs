//! A chat client: [`ChatClient`] speaks the protocol over one WebSocket (tests, the benchmark
//! and the CLI use it), and [`run_terminal`] is `strata chat`: a line-based terminal chat that
//! reconnects and resumes when the server asks it to (or goes away).

use std::collections::HashMap;
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
    /// No room was given and none follows from the account: only a customer has a room of
    /// their own (their support room).
    #[error("{0}")]
    NoDefaultRoom(String),
    /// Asking the api who the token belongs to failed (to pick the default room).
    #[error("asking {url} who the token belongs to: {message}")]
    WhoAmI {
        /// The `users/me` URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the connection for a reason that another try cannot clear (the
    /// token is refused, the room is not the caller's, no such room): 401, 403, 404, or the
    /// close code 4001.
    #[error("the server refused to let us in ({status}): {message}")]
    Refused {
        /// The HTTP status, or the close code.
        status: u16,
        /// The server's explanation (the JSON error body's message).
        message: String,
    },
}

impl ClientError {
    /// Whether connecting again (after a pause) may succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::NoDefaultRoom(_) | Self::WhoAmI { .. }
        )
    }
}

/// A connection error as the user should see it: an upgrade refused with 401, 403 or 404 is
/// [`ClientError::Refused`] with the server's own message; other errors pass through.
fn refused(error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Http(response) if matches!(response.status().as_u16(), 401 | 403 | 404) => {
            let status = response.status();
            let message = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
                .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_owned());
            ClientError::Refused {
                status: status.as_u16(),
                message,
            }
        }
        other => ClientError::WebSocket(other),
    }
}

/// A close code in words, for the terminal.
pub fn close_reason(code: Option<u16>) -> &'static str {
    match code {
        Some(close::RECONNECT) => "the server is restarting",
        Some(close::TOO_SLOW) => "we read too slowly",
        Some(close::HEARTBEAT_TIMEOUT) => "no heartbeat",
        Some(close::POLICY) => "too many frames, or invalid ones",
        Some(close::TOO_BIG) => "a message was too big",
        Some(close::UNAUTHORIZED) => "the token was refused",
        Some(1000) => "closed by the server",
        Some(_) => "closed by the server",
        None => "the connection dropped",
    }
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
        Self::connect_with(url, &[]).await
    }

    /// As [`ChatClient::connect`], with extra handshake headers (`Cookie`, `Origin`: what a
    /// browser sends).
    ///
    /// # Errors
    /// When the connection or the upgrade fails (a 4xx from the server included), or a
    /// header is not a valid HTTP header.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let bad = |e: &dyn std::fmt::Display| ClientError::Protocol(format!("{name}: {e}"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
            let value = HeaderValue::from_str(value).map_err(|e| bad(&e))?;
            request.headers_mut().insert(name, value);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(refused)?;
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

/// Where `strata chat` keeps the last message id it showed per server and room, so a client
/// that leaves and comes back shows what was said meanwhile.
#[derive(Debug, Clone)]
pub struct LastSeen {
    path: std::path::PathBuf,
    key: String,
}

impl LastSeen {
    /// The marks in `path` (a small JSON object), for `room` at `base`.
    pub fn new(path: std::path::PathBuf, base: &str, room: &str) -> Self {
        Self {
            path,
            key: format!("{} {room}", base.trim_end_matches('/')),
        }
    }

    /// The default file: `$XDG_STATE_HOME/strata/chat-last-seen.json`, or under
    /// `~/.local/state`; `None` when neither is known.
    pub fn default_path() -> Option<std::path::PathBuf> {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| std::path::PathBuf::from(home).join(".local/state"))
            })?;
        Some(state.join("strata").join("chat-last-seen.json"))
    }

    fn read_all(&self) -> serde_json::Map<String, serde_json::Value> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The last id shown in this room, if any.
    pub fn get(&self) -> Option<i64> {
        self.read_all()
            .get(&self.key)
            .and_then(serde_json::Value::as_i64)
    }

    /// Remembers `id`. A mark that cannot be written costs only the resume: it is not an
    /// error of the chat.
    pub fn set(&self, id: i64) {
        let mut all = self.read_all();
        all.insert(self.key.clone(), id.into());
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self.path.with_extension("json.tmp");
        let written = serde_json::to_vec(&all)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::debug!(error = %e, path = %self.path.display(), "cannot remember the last message");
        }
    }
}

/// The account a token speaks for, as the api has it now.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Me {
    /// The account's id.
    pub id: i64,
    /// Its display name.
    pub display_name: String,
    /// Its role.
    pub role: strata_core::auth::UserRole,
}

/// Asks the api who `token` is (`GET /api/v1/users/me` at `base`, which is the gateway).
///
/// # Errors
/// [`ClientError::Refused`] when the api refuses the token (401), [`ClientError::WhoAmI`]
/// when it cannot be asked (`base` is a chat instance, not the gateway, for one).
pub async fn who_am_i(base: &str, token: &str) -> Result<Me, ClientError> {
    let url = format!("{}/api/v1/users/me", base.trim_end_matches('/'));
    let who_am_i = |message: String| ClientError::WhoAmI {
        url: url.clone(),
        message,
    };
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| who_am_i(e.to_string()))?
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| who_am_i(e.to_string()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| who_am_i(e.to_string()))?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ClientError::Refused {
            status: status.as_u16(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the token is refused")
                .to_owned(),
        });
    }
    if !status.is_success() {
        return Err(who_am_i(format!("{status}: {body}")));
    }
    serde_json::from_value(body).map_err(|e| who_am_i(e.to_string()))
}

/// The room `strata chat` joins when none is named: the caller's own support room,
/// `support-<id>`, of the account as the api has it now ([`who_am_i`]), not as the token
/// was issued. Support and admin accounts have no room of their own and must name one.
///
/// # Errors
/// [`ClientError::NoDefaultRoom`] for a support or admin account.
pub fn default_room(me: &Me) -> Result<String, ClientError> {
    match me.role {
        strata_core::auth::UserRole::Customer => Ok(format!("support-{}", me.id)),
        role => Err(ClientError::NoDefaultRoom(format!(
            "an account with the {} role has no room of its own: name one with --room \
             (`lobby-<name>`, or a customer's `support-<user id>`)",
            role.as_str()
        ))),
    }
}

/// What `strata chat` runs with.
#[derive(Debug, Clone)]
pub struct TerminalOptions {
    /// The gateway or a chat instance, `http://host:port`.
    pub base: String,
    /// The room to join.
    pub room: String,
    /// The session token.
    pub token: String,
    /// Show the messages after this id first; default: after the last one shown here before.
    pub after: Option<i64>,
    /// Where the last id shown per room is kept; `None` keeps nothing.
    pub last_seen: Option<LastSeen>,
    /// Who the token is, when the api could say ([`who_am_i`]): named in the messages, and
    /// not announced to themselves as going online.
    pub me: Option<Me>,
}

/// Why the connection loop ended.
enum Ended {
    /// `/quit` or end of input.
    Quit,
    /// The connection closed or failed: connect again.
    Dropped,
}

/// `strata chat`: joins the room, prints its messages (those sent since this client last
/// showed the room first) and sends each line typed. `/quit` (or end of input) leaves, also
/// while reconnecting. Reconnects and resumes from the last id seen when the server asks
/// (draining, too slow) or the connection drops; gives up at once when the server refuses
/// (401, 403, 404: another try cannot clear it), with the server's explanation.
///
/// # Errors
/// When the first connection fails, or the server refuses the token or the room.
pub async fn run_terminal(options: TerminalOptions) -> Result<(), ClientError> {
    // Standard input is read on a plain thread: lines arrive on a channel.
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let TerminalOptions {
        base,
        room,
        token,
        after,
        last_seen,
        me,
    } = options;
    let mut names = Names::default();
    if let Some(me) = &me {
        names.learn(me.id, &me.display_name);
    }
    let mut last: Option<i64> = after.or_else(|| last_seen.as_ref().and_then(LastSeen::get));
    let mut session = Session {
        room: &room,
        counter: 0,
        id: uuid::Uuid::new_v4().simple().to_string(),
        last_seen: last_seen.as_ref(),
        names,
        me: me.as_ref().map(|me| me.id),
    };
    let mut first = true;
    loop {
        let url = ws_url(&base, Some(&token), Some(&room), last);
        let client = tokio::select! {
            connected = ChatClient::connect(&url) => connected,
            quit = wait_for_quit(&mut lines), if !first => {
                quit?;
                return Ok(());
            }
        };
        let client = match client {
            Ok(client) => client,
            Err(e) if first || e.is_permanent() => return Err(e),
            Err(e) => {
                eprintln!("-- cannot reconnect ({e}); trying again in a second (/quit leaves)");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    quit = wait_for_quit(&mut lines) => {
                        quit?;
                        return Ok(());
                    }
                }
                continue;
            }
        };
        first = false;
        match session.converse(client, &mut lines, &mut last).await? {
            Ended::Quit => return Ok(()),
            Ended::Dropped => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads lines until `/quit` or the end of input (other lines cannot be sent while there is
/// no connection, and are dropped with a word).
async fn wait_for_quit(
    lines: &mut tokio::sync::mpsc::Receiver<std::io::Result<String>>,
) -> Result<(), ClientError> {
    loop {
        match lines.recv().await.transpose()? {
            None => return Ok(()),
            Some(line) if line.trim() == "/quit" => return Ok(()),
            Some(_) => eprintln!("-- not connected: the line was not sent"),
        }
    }
}

/// One terminal chat across its connections.
struct Session<'a> {
    room: &'a str,
    counter: u64,
    id: String,
    last_seen: Option<&'a LastSeen>,
    names: Names,
    /// The user this session speaks for, when known.
    me: Option<i64>,
}

/// The display names the session has seen in messages, to name people in the frames that
/// carry only an id (presence, typing).
#[derive(Debug, Default)]
pub struct Names(HashMap<i64, String>);

impl Names {
    /// Remembers `name` for `user` (an empty name, an account that is gone, is not).
    pub fn learn(&mut self, user: i64, name: &str) {
        if !name.is_empty() {
            self.0.insert(user, name.to_owned());
        }
    }

    /// How to call `user`: the display name when known, `user <id>` otherwise.
    pub fn of(&self, user: i64) -> String {
        self.0
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("user {user}"))
    }
}

/// The terminal line of a `presence` frame; `None` for the session's own user, whose
/// coming online is the join itself.
pub fn presence_line(user: i64, online: bool, names: &Names, me: Option<i64>) -> Option<String> {
    (me != Some(user)).then(|| {
        format!(
            "-- {} is {}",
            names.of(user),
            if online { "online" } else { "offline" }
        )
    })
}

/// The terminal line of a `message` frame: `[sent_at] #id Name: body`; `user <id>` stands in
/// for a sender without a display name. `None` for other frames.
pub fn message_line(frame: &ServerFrame, names: &mut Names) -> Option<String> {
    let ServerFrame::Message {
        id,
        sender,
        sender_name,
        body,
        sent_at,
        ..
    } = frame
    else {
        return None;
    };
    names.learn(*sender, sender_name);
    Some(format!("[{sent_at}] #{id} {}: {body}", names.of(*sender)))
}

impl Session<'_> {
    /// Chats over one connection until it ends.
    async fn converse(
        &mut self,
        mut client: ChatClient,
        lines: &mut tokio::sync::mpsc::Receiver<std::io::Result<String>>,
        last: &mut Option<i64>,
    ) -> Result<Ended, ClientError> {
        loop {
            tokio::select! {
                line = lines.recv() => {
                    let Some(line) = line.transpose()? else {
                        client.close().await;
                        return Ok(Ended::Quit);
                    };
                    let line = line.trim();
                    if line == "/quit" {
                        client.close().await;
                        return Ok(Ended::Quit);
                    }
                    if line.is_empty() {
                        continue;
                    }
                    self.counter += 1;
                    let frame = ClientFrame::Send {
                        room: self.room.to_owned(),
                        client_id: format!("{}-{}", self.id, self.counter),
                        body: line.to_owned(),
                    };
                    if client.send(&frame).await.is_err() {
                        return Ok(Ended::Dropped);
                    }
                }
                event = client.next() => match event? {
                    Event::Frame(frame @ ServerFrame::Message { id, .. }) => {
                        *last = Some(id);
                        if let Some(marks) = self.last_seen {
                            marks.set(id);
                        }
                        if let Some(line) = message_line(&frame, &mut self.names) {
                            println!("{line}");
                        }
                    }
                    Event::Frame(ServerFrame::Joined { room, after }) => {
                        last.get_or_insert(after);
                        println!("-- joined {room}");
                    }
                    Event::Frame(ServerFrame::Presence { user, online, .. }) => {
                        if let Some(line) = presence_line(user, online, &self.names, self.me) {
                            println!("{line}");
                        }
                    }
                    Event::Frame(ServerFrame::Typing { user, .. }) => {
                        println!("-- {} is typing", self.names.of(user));
                    }
                    Event::Frame(ServerFrame::Error { code, message, .. }) => eprintln!("-- error {code}: {message}"),
                    Event::Frame(_) => {}
                    Event::Closed(Some(close::UNAUTHORIZED)) => {
                        return Err(ClientError::Refused {
                            status: close::UNAUTHORIZED,
                            message: "the token was refused (expired?); log in again".into(),
                        });
                    }
                    Event::Closed(code) => {
                        eprintln!("-- disconnected: {}; resuming", close_reason(code));
                        return Ok(Ended::Dropped);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sender: i64, sender_name: &str) -> ServerFrame {
        ServerFrame::Message {
            room: "support-2".into(),
            id: 7,
            sender,
            sender_name: sender_name.into(),
            client_id: "c-1".into(),
            body: "hi".into(),
            sent_at: "2026-12-06T04:00:00Z".into(),
        }
    }

    #[test]
    fn messages_show_display_names_and_presence_reuses_them() {
        let mut names = Names::default();
        assert_eq!(
            message_line(&message(2, "Ann"), &mut names).as_deref(),
            Some("[2026-12-06T04:00:00Z] #7 Ann: hi")
        );
        assert_eq!(names.of(2), "Ann");
        // A sender without an account keeps their id.
        assert_eq!(
            message_line(&message(3, ""), &mut names).as_deref(),
            Some("[2026-12-06T04:00:00Z] #7 user 3: hi")
        );
        assert_eq!(names.of(3), "user 3");
        assert_eq!(message_line(&ServerFrame::Pong, &mut names), None);
    }

    #[test]
    fn presence_names_others_and_is_silent_about_oneself() {
        let mut names = Names::default();
        names.learn(1, "Ann");
        names.learn(2, "Bo");
        assert_eq!(presence_line(1, true, &names, Some(1)), None);
        assert_eq!(
            presence_line(2, true, &names, Some(1)).as_deref(),
            Some("-- Bo is online")
        );
        assert_eq!(
            presence_line(3, false, &names, Some(1)).as_deref(),
            Some("-- user 3 is offline")
        );
        // Unknown identity (a chat instance asked directly): everyone is announced.
        assert_eq!(
            presence_line(1, true, &names, None).as_deref(),
            Some("-- Ann is online")
        );
    }
}
