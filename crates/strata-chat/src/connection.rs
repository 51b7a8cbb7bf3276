//! One client connection: authentication, then a reader (frames from the client) and a writer
//! (the bounded queue of frames to it) running side by side until either ends.
//!
//! The writer keeps, per joined room, the id of the last message sent (its cursor). A message
//! at or below the cursor is a duplicate and skipped; one above `cursor + 1` reveals a gap
//! (a lost or late bus message) that is filled from the store first. Because ids are gap-free
//! and committed in order, this delivers every message exactly once, in id order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use strata_bus::Bus;
use strata_cache::Cache;
use strata_core::auth::UserRole;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::auth::{self, User};
use crate::background::{DESK_PRESENCE_SUBJECT, DeskPresence};
use crate::committer::Post;
use crate::hub::{Hub, Member, Next, Out, Outbox, message_frame, presence_key};
use crate::protocol::{ClientFrame, ServerFrame, TYPING_INTERVAL_MS, close};
use crate::room::RoomId;

/// Messages read from the store per query when catching up.
const PAGE: u32 = 200;
/// The longest client id accepted.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// How long a closed connection waits for the client to close its side, reading and
/// dropping what it still sends (see [`linger`]). A client that answers the close does so
/// within a round trip; one that does not is not worth more of a drain's time.
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and dropped while lingering: a client's frames in flight when the
/// close went out (socket buffers), not a stream it keeps sending.
const LINGER_BYTES: usize = 1024 * 1024;

/// Where the connection starts: a token and a room from the URL, when given.
pub(crate) struct Start {
    pub user: Option<User>,
    pub room: Option<(RoomId, Option<i64>)>,
    /// `watch=support`: the connection gets an `activity` frame for every support room
    /// message (support and admin accounts; anyone else gets a `forbidden` error frame).
    pub watch_support: bool,
}

/// Runs one connection to its end.
///
/// The connection's future lives as long as the connection, idle or not, so it is kept
/// small: a future is as large as its largest await plus everything it captured, hence the
/// split before the `async fn` (which would keep the whole stream as an argument) and the
/// boxed awaits of everything transient (authentication, store and cache calls).
pub(crate) fn run<S>(
    hub: Arc<Hub>,
    ws: WebSocketStream<S>,
    start: Start,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    live(hub, sink, stream, start)
}

async fn live<S>(
    hub: Arc<Hub>,
    mut sink: Sink<S>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    start: Start,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let user = match start.user {
        Some(user) => user,
        None => match Box::pin(authenticate(&hub, &mut stream)).await {
            Ok(user) => user,
            Err(reason) => {
                if let Ok(mut ws) = stream.reunite(sink) {
                    let frame = close_frame(close::UNAUTHORIZED, reason);
                    send_close(&hub, &mut ws, Some(frame)).await;
                    Box::pin(linger(&hub, ws)).await;
                }
                return;
            }
        },
    };
    hub.metrics.connections.inc();
    if hub.connected(user.id) {
        Box::pin(set_presence(&hub, user.id)).await;
        Box::pin(tell_desk(&hub, user.id, true)).await;
    }
    let conn = hub.next_conn_id();
    let member = Member {
        user: user.id,
        outbox: Arc::new(Outbox::new(hub.limits.outgoing_buffer)),
    };
    let last_inbound = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ready = ServerFrame::Ready {
        user: user.id,
        instance: hub.instance.to_string(),
        heartbeat_ms: u64::try_from(hub.limits.heartbeat.as_millis()).unwrap_or(u64::MAX),
    };
    member.offer(Out::Text(ready.to_json().into()), &hub.metrics);
    let mut reader = Reader {
        hub: hub.clone(),
        conn,
        user,
        member: member.clone(),
        joined: HashSet::new(),
        bucket: Bucket::new(hub.limits.rate_per_sec, hub.limits.burst),
        refused_in_a_row: 0,
        typed: HashMap::new(),
        last_inbound: last_inbound.clone(),
        started,
    };
    if let Some((room, after)) = start.room {
        Box::pin(reader.join(room, after)).await;
    }
    if start.watch_support {
        Box::pin(reader.watch_support()).await;
    }
    let outbox = member.outbox.clone();
    let writer = Writer {
        hub: hub.clone(),
        outbox: outbox.clone(),
        cursors: HashMap::new(),
    };
    let ended = tokio::select! {
        () = reader.run(&mut stream) => Ended::Reader,
        killed = writer.run(&mut sink) => if killed { Ended::Killed } else { Ended::Writer },
        code = watchdog(&hub, conn, &member, &last_inbound, started) => Ended::Watchdog(code),
    };
    let code = match ended {
        Ended::Reader => outbox.code(),
        Ended::Watchdog(code) => code,
        Ended::Writer | Ended::Killed => 0,
    };
    // Whole again for the close. A frame the writer left half-sent in the split sink is
    // dropped with it: nothing but a close may follow a client's close.
    let mut ws = stream.reunite(sink).ok();
    if !hub.killed.is_cancelled()
        && let Some(ws) = &mut ws
    {
        // The watchdog gave up on a close the writer could not send, or the client closed
        // while a close was asked for: the close frame goes out unless the client does not
        // take even that. Otherwise this answers a client's own close.
        let frame = (code != 0).then(|| close_frame(code, close_reason(code)));
        send_close(&hub, ws, frame).await;
    }
    // Frames offered from now on are dropped, not queued for nobody.
    outbox.end();
    let killed = matches!(ended, Ended::Killed) || hub.killed.is_cancelled();
    for room in &reader.joined {
        hub.remove_member(room, conn);
    }
    hub.unwatch_support(conn);
    hub.metrics.connections.dec();
    // A crashed instance cleans nothing up: its users' presence expires with the TTL.
    if !killed && hub.disconnected(user.id) {
        let _ = Box::pin(hub.cache.delete(&presence_key(user.id))).await;
        Box::pin(tell_desk(&hub, user.id, false)).await;
    }
    if !killed && let Some(ws) = ws {
        Box::pin(linger(&hub, ws)).await;
    }
}

/// Sends `frame` (a close frame), or without one flushes what tungstenite has queued: the
/// answer to a client's close, which echoes its code (RFC 6455 §5.5.1). At most a
/// heartbeat: a client that does not read may not take even that.
async fn send_close<S>(hub: &Hub, ws: &mut WebSocketStream<S>, frame: Option<Message>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close = async {
        match frame {
            Some(frame) => ws.send(frame).await,
            None => ws.flush().await,
        }
    };
    let _ = tokio::time::timeout(hub.limits.heartbeat, Box::pin(close)).await;
}

/// Ends a connection whose close frame is sent (or whose client is gone) the way RFC 6455
/// §7.1.1 asks of a server: the TCP connection is half-closed, and what the client still
/// sends is read and dropped until it closes its side too, for at most [`LINGER`] and
/// [`LINGER_BYTES`], or until the instance is killed. Closing a socket with unread input
/// makes the kernel answer with a reset, which can destroy the close frame before the client
/// (or a gateway in between) reads it: a flood or an oversized frame always leaves input
/// unread.
async fn linger<S>(hub: &Hub, mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = ws.get_mut();
    let drain = async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut buf = [0_u8; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    };
    tokio::select! {
        () = hub.killed.cancelled() => {}
        _ = tokio::time::timeout(LINGER, drain) => {}
    }
}

/// How a connection's run ended.
enum Ended {
    /// The client closed or is gone (or the instance was killed).
    Reader,
    /// The writer sent its close frame: a close asked for, or a drain (or the client is
    /// gone).
    Writer,
    /// The instance was killed: nothing more is sent.
    Killed,
    /// The watchdog gave up on the client, with this close code.
    Watchdog(u16),
}

/// Pings the client every heartbeat (through the outbox, so a client that reads nothing
/// overflows it and counts as too slow) and ends the connection, returning the close code,
/// when the client sent nothing for two heartbeats or when a close asked for a heartbeat
/// ago has still not gone out: the writer is then stuck on a client that stopped reading,
/// and only dropping the connection frees it.
///
/// The first tick comes after a phase spread by connection id over the interval, so the
/// pings of connections opened together (a reconnect storm after a drain) do not stay
/// bunched into one wave per heartbeat.
async fn watchdog(
    hub: &Hub,
    conn: u64,
    member: &Member,
    last_inbound: &AtomicU64,
    started: Instant,
) -> u16 {
    let heartbeat = hub.limits.heartbeat;
    let limit = u64::try_from((heartbeat * 2).as_millis()).unwrap_or(u64::MAX);
    let mut closing = false;
    let mut wait = heartbeat.mul_f64(0.1 + 0.9 * spread(conn));
    loop {
        tokio::time::sleep(wait).await;
        wait = heartbeat;
        let code = member.outbox.code();
        if code != 0 {
            if closing {
                return code;
            }
            closing = true;
            continue;
        }
        let idle = millis_since(started).saturating_sub(last_inbound.load(Ordering::Relaxed));
        if idle > limit {
            return close::HEARTBEAT_TIMEOUT;
        }
        member.offer(Out::Ping, &hub.metrics);
    }
}

/// A fraction in [0, 1) for `n`, evenly spread for consecutive `n` (multiples of the golden
/// ratio, modulo 1).
fn spread(n: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_8;
    #[allow(clippy::cast_precision_loss)]
    let x = (n % (1 << 20)) as f64 * GOLDEN;
    x.fract()
}

/// Tells this instance and the others (over the bus, `chat.member.<room>`) that `room` has a
/// new member: each re-reads the room's roster at its next presence tick.
async fn roster_changed(hub: &Hub, room: &RoomId) {
    hub.roster_changed(room);
    let notice = serde_json::json!({ "room": room.as_str() }).to_string();
    let subject = format!("{}{room}", crate::background::MEMBER_SUBJECT);
    if let Err(error) = hub.bus.publish(&subject, Bytes::from(notice)).await {
        tracing::debug!(%error, %room, "cannot announce a new member");
    }
}

/// Tells every instance's watching connections (the agents' consoles) that `user` came or
/// went; lost on a bus outage, which the consoles' periodic read of their list makes up for.
async fn tell_desk(hub: &Hub, user: i64, online: bool) {
    let notice = DeskPresence { user, online };
    let Ok(payload) = serde_json::to_vec(&notice) else {
        return;
    };
    if let Err(error) = hub
        .bus
        .publish(DESK_PRESENCE_SUBJECT, Bytes::from(payload))
        .await
    {
        tracing::debug!(%error, user, "cannot tell the consoles about a presence change");
    }
}

pub(crate) async fn set_presence(hub: &Hub, user: i64) {
    let ttl = hub.presence_ttl();
    if let Err(error) = hub
        .cache
        .set(&presence_key(user), Bytes::from_static(b"1"), ttl)
        .await
    {
        tracing::warn!(%error, user, "cannot record presence");
    }
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Waits for the first frame, which must be `auth` with a valid token.
async fn authenticate<S>(
    hub: &Hub,
    stream: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
) -> Result<User, &'static str>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = hub.limits.heartbeat * 2;
    let first = loop {
        match tokio::time::timeout(deadline, stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(_) => return Err("closed before authenticating"),
            Err(_) => return Err("no auth frame in time"),
        }
    };
    match serde_json::from_str::<ClientFrame>(&first) {
        Ok(ClientFrame::Auth { token }) => auth::verify(&hub.verifier, &token).map_err(|e| e.0),
        _ => Err("the first frame must be auth"),
    }
}

/// A token bucket: `rate` frames per second on average, bursts of `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct Reader {
    hub: Arc<Hub>,
    conn: u64,
    user: User,
    member: Member,
    joined: HashSet<RoomId>,
    bucket: Bucket,
    refused_in_a_row: u32,
    /// When each room's last relayed `typing` went out (see [`TYPING_INTERVAL_MS`]).
    typed: HashMap<RoomId, Instant>,
    last_inbound: Arc<AtomicU64>,
    started: Instant,
}

impl Reader {
    fn reply(&self, frame: &ServerFrame) {
        self.member
            .offer(Out::Text(frame.to_json().into()), &self.hub.metrics);
    }

    fn error(&self, code: &str, message: impl Into<String>, client_id: Option<String>) {
        self.reply(&ServerFrame::Error {
            code: code.to_owned(),
            message: message.into(),
            client_id,
        });
    }

    /// Reads and handles the client's frames; returns when the client closed or is gone.
    ///
    /// Once a close is asked for (flood, frame too big, too slow) nothing more is read or
    /// handled, and this never returns: the writer sends what is queued and the close frame,
    /// and the input left unread is drained afterwards (see [`linger`]).
    async fn run<S>(&mut self, stream: &mut futures_util::stream::SplitStream<WebSocketStream<S>>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.member.outbox.code() != 0 {
                return std::future::pending().await;
            }
            let next = tokio::select! {
                // A close request is the writer's to carry out (after queued frames).
                () = self.hub.killed.cancelled() => return,
                next = stream.next() => next,
            };
            self.last_inbound
                .store(millis_since(self.started), Ordering::Relaxed);
            match next {
                Some(Ok(Message::Text(text))) => {
                    if !self.admit_frame() {
                        continue;
                    }
                    match serde_json::from_str::<ClientFrame>(&text) {
                        // Boxed: the handling (a join, a queued post) is transient, while
                        // this future lives as long as the connection.
                        Ok(frame) => Box::pin(self.handle(frame)).await,
                        Err(e) => {
                            self.error("invalid_frame", format!("not a valid frame: {e}"), None)
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    if self.admit_frame() {
                        self.error("invalid_frame", "binary frames are not supported", None);
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(tungstenite::Error::Capacity(_))) => {
                    self.member.outbox.close(close::TOO_BIG);
                }
                Some(Err(_)) => return,
            }
        }
    }

    /// The rate limit: a refused frame gets an error frame; a client that keeps flooding
    /// (twice its burst refused in a row) is closed with [`close::POLICY`].
    fn admit_frame(&mut self) -> bool {
        if self.bucket.take() {
            self.refused_in_a_row = 0;
            return true;
        }
        self.hub.metrics.rate_limited.inc();
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > self.hub.limits.burst.saturating_mul(2) {
            self.member.outbox.close(close::POLICY);
        } else if self.refused_in_a_row == 1 {
            self.error("rate_limited", "too many frames: slow down", None);
        }
        false
    }

    async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Auth { .. } => {
                self.error(
                    "already_authenticated",
                    "this connection is authenticated",
                    None,
                );
            }
            ClientFrame::Ping => self.reply(&ServerFrame::Pong),
            ClientFrame::Join { room, after } => match room.parse::<RoomId>() {
                Ok(room) => self.join(room, after).await,
                Err(e) => self.error("unknown_room", e.0, None),
            },
            ClientFrame::Leave { room } => {
                if let Some(room) = self.joined_room(&room, None) {
                    self.joined.remove(&room);
                    self.hub.remove_member(&room, self.conn);
                    self.member
                        .offer(Out::Leave { room: room.clone() }, &self.hub.metrics);
                    self.reply(&ServerFrame::Left {
                        room: room.to_string(),
                    });
                }
            }
            ClientFrame::Typing { room } => {
                if let Some(room) = self.joined_room(&room, None)
                    && self.typing_due(&room)
                {
                    let frame = ServerFrame::Typing {
                        room: room.to_string(),
                        user: self.user.id,
                    };
                    self.hub.broadcast(&room, &frame, Some(self.conn));
                    let relay = serde_json::json!({
                        "room": room.as_str(),
                        "user": self.user.id,
                        "instance": &*self.hub.instance,
                    });
                    let subject = format!("chat.typing.{room}");
                    let _ = Box::pin(
                        self.hub
                            .bus
                            .publish(&subject, Bytes::from(relay.to_string())),
                    )
                    .await;
                }
            }
            ClientFrame::Send {
                room,
                client_id,
                body,
            } => self.send(&room, client_id, body).await,
            ClientFrame::Read { room, id } => self.read(&room, id).await,
        }
    }

    /// Watches every support room when the account may answer them (its role now, read from
    /// the store); else an error frame says why.
    async fn watch_support(&mut self) {
        let users = self.hub.store.users();
        match Box::pin(users.role(self.user.id)).await {
            Ok(Some(UserRole::Support | UserRole::Admin)) => {
                self.hub.watch_support(self.conn, self.member.clone());
            }
            Ok(_) => self.error(
                "forbidden",
                "watching the support rooms needs a support or admin account",
                None,
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot read a role");
                self.error("unavailable", "the store is unavailable: try again", None);
            }
        }
    }

    /// True when a `typing` notice in `room` may be relayed now (and counts it as relayed):
    /// ephemeral notices are cheap to drop, and one a second says as much as one a key.
    fn typing_due(&mut self, room: &RoomId) -> bool {
        let now = Instant::now();
        let interval = Duration::from_millis(TYPING_INTERVAL_MS);
        match self.typed.get(room) {
            Some(at) if now.duration_since(*at) < interval => false,
            _ => {
                self.typed.insert(room.clone(), now);
                true
            }
        }
    }

    /// Moves the user's read marker in a joined room; a marker that would move back, or
    /// ahead of the room, is left as it is without complaint (several tabs of one agent race).
    async fn read(&mut self, raw: &str, id: i64) {
        let Some(room) = self.joined_room(raw, None) else {
            return;
        };
        if id < 0 {
            self.error("invalid_id", "id must be 0 or more", None);
            return;
        }
        let chat = self.hub.store.chat();
        if let Err(error) = Box::pin(chat.mark_read(room.as_str(), self.user.id, id)).await {
            tracing::warn!(%error, %room, "cannot store a read marker");
            self.error("unavailable", "the store is unavailable: try again", None);
        }
    }

    /// The joined room named `raw`, or an error frame: `unknown_room` when `raw` is not a
    /// room id at all, `not_joined` when it is one this connection has not joined.
    fn joined_room(&self, raw: &str, client_id: Option<&String>) -> Option<RoomId> {
        let room = match raw.parse::<RoomId>() {
            Ok(room) => room,
            Err(e) => {
                self.error("unknown_room", e.0, client_id.cloned());
                return None;
            }
        };
        if !self.joined.contains(&room) {
            self.error(
                "not_joined",
                format!("join {raw:?} first"),
                client_id.cloned(),
            );
            return None;
        }
        Some(room)
    }

    async fn join(&mut self, room: RoomId, after: Option<i64>) {
        match Box::pin(crate::auth::admitted(&self.hub.store, self.user, &room)).await {
            Ok(true) => {}
            Ok(false) => {
                self.error("forbidden", format!("you may not join {room}"), None);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, %room, "cannot read the role of a joining user");
                self.error("unavailable", "the store is unavailable: try again", None);
                return;
            }
        }
        let chat = self.hub.store.chat();
        match Box::pin(chat.join(room.as_str(), room.kind(), self.user.id)).await {
            Ok(false) => {}
            // A new member: every instance with the room re-reads its roster, so its members
            // learn the newcomer's presence now rather than at the next periodic read.
            Ok(true) => Box::pin(roster_changed(&self.hub, &room)).await,
            Err(error) => {
                tracing::warn!(%error, %room, "cannot record a join");
                self.error("unavailable", "the store is unavailable: try again", None);
                return;
            }
        }
        // Registered before the writer is told to catch up: anything fanned out meanwhile is
        // either in the catch-up or arrives after it (and is then de-duplicated by id).
        self.hub.add_member(&room, self.conn, self.member.clone());
        self.joined.insert(room.clone());
        self.member
            .offer(Out::Join { room, after }, &self.hub.metrics);
    }

    async fn send(&mut self, raw: &str, client_id: String, body: String) {
        let Some(room) = self.joined_room(raw, Some(&client_id)) else {
            return;
        };
        if client_id.is_empty() || client_id.chars().count() > MAX_CLIENT_ID_LEN {
            self.error(
                "invalid_client_id",
                format!("client_id must have 1 to {MAX_CLIENT_ID_LEN} characters"),
                Some(client_id),
            );
            return;
        }
        if body.is_empty() || body.len() > self.hub.limits.max_body_bytes {
            self.error(
                "too_large",
                format!(
                    "body must have 1 to {} bytes",
                    self.hub.limits.max_body_bytes
                ),
                Some(client_id),
            );
            return;
        }
        let post = Post {
            room,
            sender: self.user.id,
            client_id,
            body,
            member: self.member.clone(),
        };
        // The committer acknowledges once the message is stored; meanwhile this connection
        // reads on. A full queue waits here, which stops reading from the client.
        if self.hub.posts.send(post).await.is_err() {
            self.error("unavailable", "the instance is stopping", None);
        }
    }
}

struct Writer {
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    cursors: HashMap<RoomId, i64>,
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;

impl Writer {
    /// Runs until the connection ends; true when the instance was killed.
    async fn run<S>(mut self, sink: &mut Sink<S>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            tokio::select! {
                biased;
                () = self.hub.killed.cancelled() => return true,
                () = self.hub.draining.cancelled() => {
                    // In-flight frames first, then the reconnect request.
                    let _ = Box::pin(self.finish(sink, close::RECONNECT, true)).await;
                    return false;
                }
                next = self.outbox.next() => match next {
                    Next::Close(code) => {
                        // Queued frames (the error that explains the close) go first, except
                        // for a client too slow to take them.
                        let _ = Box::pin(self.finish(sink, code, code != close::TOO_SLOW)).await;
                        return false;
                    }
                    Next::Out(out) => {
                        if self.write(sink, out).await.is_err() {
                            return false;
                        }
                        if self.outbox.is_empty() && sink.flush().await.is_err() {
                            return false;
                        }
                    }
                },
            }
        }
    }

    /// Sends the queued frames (when `flush_queue`), then a close frame with `code`.
    async fn finish<S>(
        &mut self,
        sink: &mut Sink<S>,
        code: u16,
        flush_queue: bool,
    ) -> Result<(), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while flush_queue && let Some(out) = self.outbox.pop() {
            self.write(sink, out).await?;
        }
        sink.send(close_frame(code, close_reason(code))).await
    }

    /// Sends one queued frame. Plain frames and in-order room messages are written here;
    /// anything that reads the store (a join, a gap to fill) runs boxed, so the writer's
    /// own future stays small while the connection idles.
    async fn write<S>(&mut self, sink: &mut Sink<S>, out: Out) -> Result<(), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match out {
            Out::Text(text) => sink.feed(Message::Text(text)).await,
            Out::Ping => sink.feed(Message::Ping(Bytes::new())).await,
            Out::Message(fanned) => {
                let Some(&cursor) = self.cursors.get(&fanned.room) else {
                    return Ok(());
                };
                if fanned.seq <= cursor {
                    return Ok(());
                }
                if fanned.seq == cursor + 1 {
                    sink.feed(Message::Text(fanned.text.clone())).await?;
                    if let Some(cursor) = self.cursors.get_mut(&fanned.room) {
                        *cursor = fanned.seq;
                    }
                    return Ok(());
                }
                Box::pin(self.write_slow(sink, Out::Message(fanned))).await
            }
            other => Box::pin(self.write_slow(sink, other)).await,
        }
    }

    async fn write_slow<S>(
        &mut self,
        sink: &mut Sink<S>,
        out: Out,
    ) -> Result<(), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match out {
            Out::Text(text) => sink.feed(Message::Text(text)).await,
            Out::Ping => sink.feed(Message::Ping(Bytes::new())).await,
            Out::Leave { room } => {
                self.cursors.remove(&room);
                Ok(())
            }
            Out::Join { room, after } => {
                let after = match after {
                    Some(after) => after.max(0),
                    None => Box::pin(self.hub.store.chat().last_seq(room.as_str()))
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(0),
                };
                let joined = ServerFrame::Joined {
                    room: room.to_string(),
                    after,
                };
                sink.feed(Message::Text(joined.to_json().into())).await?;
                self.cursors.insert(room.clone(), after);
                self.catch_up(sink, &room, None).await
            }
            Out::Message(fanned) => {
                let Some(&cursor) = self.cursors.get(&fanned.room) else {
                    return Ok(());
                };
                if fanned.seq <= cursor {
                    return Ok(());
                }
                if fanned.seq > cursor + 1 {
                    self.catch_up(sink, &fanned.room, Some(fanned.seq)).await?;
                }
                if self
                    .cursors
                    .get(&fanned.room)
                    .is_some_and(|c| *c < fanned.seq)
                {
                    sink.feed(Message::Text(fanned.text.clone())).await?;
                    self.cursors.insert(fanned.room.clone(), fanned.seq);
                }
                Ok(())
            }
        }
    }

    /// Sends the room's stored messages after the cursor (and before `before`, when given),
    /// page by page, advancing the cursor.
    async fn catch_up<S>(
        &mut self,
        sink: &mut Sink<S>,
        room: &RoomId,
        before: Option<i64>,
    ) -> Result<(), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let Some(&cursor) = self.cursors.get(room) else {
                return Ok(());
            };
            let chat = self.hub.store.chat();
            let page = match before {
                Some(before) => Box::pin(chat.between(room.as_str(), cursor, before, PAGE)).await,
                None => Box::pin(chat.after(room.as_str(), cursor, PAGE)).await,
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    // The client sees the gap in ids and can resume; closing would only move
                    // the problem.
                    tracing::warn!(%error, %room, "cannot read history");
                    return Ok(());
                }
            };
            let full = page.len() == PAGE as usize;
            for message in &page {
                let text: Utf8Bytes = message_frame(message).to_json().into();
                sink.feed(Message::Text(text)).await?;
                self.cursors.insert(room.clone(), message.seq);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::TOO_SLOW => "too slow: resume from your last id",
        close::POLICY => "rate limit exceeded",
        close::TOO_BIG => "frame too big",
        close::RECONNECT => "reconnect",
        close::UNAUTHORIZED => "unauthorized",
        _ => "closing",
    }
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn heartbeat_phases_spread_evenly_over_the_interval() {
        let mut deciles = [0_u32; 10];
        for conn in 1..=1000 {
            let x = spread(conn);
            assert!((0.0..1.0).contains(&x), "{x}");
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let decile = (x * 10.0) as usize;
            deciles[decile] += 1;
        }
        // 100 per tenth if perfectly even; consecutive ids must not bunch.
        assert!(
            deciles.iter().all(|&n| (90..=110).contains(&n)),
            "{deciles:?}"
        );
    }
}
