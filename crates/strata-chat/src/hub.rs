//! [`Hub`]: what one chat instance knows: its connections by room, who is online here, and
//! the shared backends. Fan-out locks one `std` mutex for a map lookup and a push onto each
//! member's [`Outbox`]; nothing awaits under it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use strata_bus::AnyBus;
use strata_cache::AnyCache;
use strata_core::auth::TokenKey;
use strata_store::{ChatMessage, Store};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::committer::Post;
use crate::metrics::ChatMetrics;
use crate::protocol::{ServerFrame, close};
use crate::room::RoomId;
use crate::server::ChatLimits;

/// What a connection's writer is asked to do, in order.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send this frame as is.
    Text(Utf8Bytes),
    /// A room message, serialized once for every local member.
    Message(Arc<Fanned>),
    /// Start delivering a room: send `joined`, then everything after `after` from the store.
    Join { room: RoomId, after: Option<i64> },
    /// Stop delivering a room.
    Leave { room: RoomId },
    /// A WebSocket ping (the heartbeat).
    Ping,
}

/// One message on its way to local members.
#[derive(Debug)]
pub(crate) struct Fanned {
    pub room: RoomId,
    pub seq: i64,
    pub text: Utf8Bytes,
}

/// How the hub reaches one connection.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub user: i64,
    pub outbox: Arc<Outbox>,
}

impl Member {
    /// Queues `out`; a full queue means the client does not keep up: it is closed with
    /// [`close::TOO_SLOW`] (it resumes after reconnecting), so memory stays bounded.
    pub fn offer(&self, out: Out, metrics: &ChatMetrics) {
        if !self.outbox.push(out) && self.outbox.code() == 0 {
            metrics.slow_closed.inc();
            self.outbox.close(close::TOO_SLOW);
        }
    }
}

/// A queue that keeps this many slots after it empties; a larger one (left by a burst or a
/// catch-up) is given back, so an idle connection holds almost nothing.
const IDLE_SLOTS: usize = 8;

/// The close code of an ended connection's outbox (never sent: the connection is gone).
const ENDED: u16 = u16::MAX;

/// What the writer takes next from an [`Outbox`].
#[derive(Debug)]
pub(crate) enum Next {
    Out(Out),
    /// A close was asked for, with this code.
    Close(u16),
}

/// One connection's frames on their way out, bounded, and its close request (the first code
/// asked for wins). The queue allocates only while it holds frames, unlike a channel's
/// fixed blocks: idle connections are most connections.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Out>>,
    capacity: usize,
    code: AtomicU16,
    wake: Notify,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            code: AtomicU16::new(0),
            wake: Notify::new(),
        }
    }

    /// Queues `out`; false when the queue is full or the connection is closing.
    pub fn push(&self, out: Out) -> bool {
        if self.code() != 0 {
            return false;
        }
        let mut queue = lock(&self.queue);
        if queue.len() >= self.capacity {
            return false;
        }
        queue.push_back(out);
        drop(queue);
        self.wake.notify_one();
        true
    }

    /// The oldest queued frame, if any.
    pub fn pop(&self) -> Option<Out> {
        let mut queue = lock(&self.queue);
        let out = queue.pop_front();
        if queue.is_empty() && queue.capacity() > IDLE_SLOTS {
            *queue = VecDeque::new();
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }

    /// The connection is gone: queued frames are dropped and later ones refused.
    pub fn end(&self) {
        self.close(ENDED);
        *lock(&self.queue) = VecDeque::new();
    }

    pub fn close(&self, code: u16) {
        let _ = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }

    /// The close code asked for, or 0.
    pub fn code(&self) -> u16 {
        self.code.load(Ordering::Acquire)
    }

    /// Waits for the next frame; a close request comes before any queued frame.
    pub async fn next(&self) -> Next {
        loop {
            let code = self.code();
            if code != 0 {
                return Next::Close(code);
            }
            if let Some(out) = self.pop() {
                return Next::Out(out);
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the checks
            // above and this wait is not missed.
            self.wake.notified().await;
        }
    }
}

/// A room with members on this instance.
#[derive(Default)]
struct LocalRoom {
    /// Connections in the room, by connection id.
    members: HashMap<u64, Member>,
    /// The highest message id fanned out here: anything not above it was already offered
    /// (the bus and the local send path both deliver each message).
    max_seen: i64,
    /// Presence as last announced to the room's local members.
    presence: HashMap<i64, bool>,
    /// The room's members from the store, and when they were read.
    roster: Vec<i64>,
    roster_read: Option<Instant>,
}

/// The state of one chat instance, shared by its connections and background tasks.
pub(crate) struct Hub {
    pub instance: Arc<str>,
    pub store: Store,
    pub cache: AnyCache,
    pub bus: AnyBus,
    pub verifier: TokenKey,
    pub limits: ChatLimits,
    pub metrics: ChatMetrics,
    /// The group-commit queue (see [`crate::committer`]).
    pub posts: mpsc::Sender<Post>,
    rooms: Mutex<HashMap<RoomId, LocalRoom>>,
    online: Mutex<HashMap<i64, usize>>,
    /// The connections that watch every support room (agents' consoles), by connection id.
    desk: Mutex<HashMap<u64, Member>>,
    next_conn: AtomicU64,
    /// Cancelled when the instance drains: connections close with [`close::RECONNECT`].
    pub draining: CancellationToken,
    /// Cancelled when the instance dies abruptly: connections drop without a close frame.
    pub killed: CancellationToken,
    /// Every connection task, so draining can wait for them.
    pub tracker: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves the maps consistent (single inserts and
    // removes), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cache key of a user's presence.
pub(crate) fn presence_key(user: i64) -> String {
    format!("presence:{user}")
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        instance: Arc<str>,
        store: Store,
        cache: AnyCache,
        bus: AnyBus,
        verifier: TokenKey,
        limits: ChatLimits,
        metrics: ChatMetrics,
        posts: mpsc::Sender<Post>,
    ) -> Self {
        Self {
            posts,
            instance,
            store,
            cache,
            bus,
            verifier,
            limits,
            metrics,
            rooms: Mutex::default(),
            online: Mutex::default(),
            desk: Mutex::default(),
            next_conn: AtomicU64::new(1),
            draining: CancellationToken::new(),
            killed: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// How long a presence entry lives: two heartbeats, so a dead instance's users go
    /// offline within two heartbeat intervals of its last refresh.
    pub fn presence_ttl(&self) -> Duration {
        self.limits.heartbeat * 2
    }

    pub fn add_member(&self, room: &RoomId, conn: u64, member: Member) {
        let mut rooms = lock(&self.rooms);
        let local = rooms.entry(room.clone()).or_default();
        local.members.insert(conn, member);
    }

    pub fn remove_member(&self, room: &RoomId, conn: u64) {
        let mut rooms = lock(&self.rooms);
        if let Some(local) = rooms.get_mut(room) {
            local.members.remove(&conn);
            if local.members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Offers stored messages to every local member of their rooms, each once per instance;
    /// a room's messages must come in id order.
    pub fn fan_out_many(&self, messages: &[ChatMessage]) {
        if messages.is_empty() {
            return;
        }
        {
            let mut rooms = lock(&self.rooms);
            for message in messages {
                self.fan_out_locked(&mut rooms, message);
            }
        }
        self.tell_desk(messages);
    }

    /// Connection `conn` watches every support room from now on (see [`Hub::tell_desk`]).
    pub fn watch_support(&self, conn: u64, member: Member) {
        lock(&self.desk).insert(conn, member);
    }

    pub fn unwatch_support(&self, conn: u64) {
        lock(&self.desk).remove(&conn);
    }

    /// Offers the watching connections a `presence` frame for `user`'s support room: the
    /// agents' console shows whether each customer is online. A user connected to two
    /// instances who leaves one shows offline until the console reads its list again.
    pub fn tell_desk_presence(&self, user: i64, online: bool) {
        let desk = lock(&self.desk);
        if desk.is_empty() {
            return;
        }
        let text = Utf8Bytes::from(
            ServerFrame::Presence {
                room: format!("support-{user}"),
                user,
                online,
            }
            .to_json(),
        );
        for member in desk.values() {
            member.offer(Out::Text(text.clone()), &self.metrics);
        }
    }

    /// Offers an `activity` frame for each support room message to every watching
    /// connection. A message may be offered twice (fanned out by the instance that stored
    /// it, then again from the bus): the frame carries its id, and clients count ids.
    fn tell_desk(&self, messages: &[ChatMessage]) {
        let desk = lock(&self.desk);
        if desk.is_empty() {
            return;
        }
        for message in messages {
            let support = message
                .room_id
                .parse::<RoomId>()
                .is_ok_and(|room| room.customer().is_some());
            if !support {
                continue;
            }
            let text = Utf8Bytes::from(
                ServerFrame::Activity {
                    room: message.room_id.clone(),
                    id: message.seq,
                    sender: message.sender_id,
                    sender_name: message.sender_name.clone(),
                    body: message.body.clone(),
                    sent_at: sent_at(message),
                }
                .to_json(),
            );
            for member in desk.values() {
                member.offer(Out::Text(text.clone()), &self.metrics);
            }
        }
    }

    fn fan_out_locked(&self, rooms: &mut HashMap<RoomId, LocalRoom>, message: &ChatMessage) {
        let Ok(room) = message.room_id.parse::<RoomId>() else {
            return;
        };
        let Some(local) = rooms.get_mut(&room) else {
            return;
        };
        if message.seq <= local.max_seen {
            return;
        }
        local.max_seen = message.seq;
        let fanned = Arc::new(Fanned {
            room,
            seq: message.seq,
            text: Utf8Bytes::from(message_frame(message).to_json()),
        });
        for member in local.members.values() {
            member.offer(Out::Message(fanned.clone()), &self.metrics);
        }
        self.metrics.fanned_out.inc();
    }

    /// Offers an ephemeral frame (typing, presence) to the room's local members, except
    /// connection `except`.
    pub fn broadcast(&self, room: &RoomId, frame: &ServerFrame, except: Option<u64>) {
        let rooms = lock(&self.rooms);
        let Some(local) = rooms.get(room) else {
            return;
        };
        let text = Utf8Bytes::from(frame.to_json());
        for (conn, member) in &local.members {
            if Some(*conn) != except {
                member.offer(Out::Text(text.clone()), &self.metrics);
            }
        }
    }

    /// Counts a connection of `user`; true when it is the user's first here.
    pub fn connected(&self, user: i64) -> bool {
        let mut online = lock(&self.online);
        let count = online.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Uncounts a connection of `user`; true when it was the user's last here.
    pub fn disconnected(&self, user: i64) -> bool {
        let mut online = lock(&self.online);
        match online.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                online.remove(&user);
                true
            }
            None => false,
        }
    }

    /// The users with a connection here.
    pub fn local_users(&self) -> Vec<i64> {
        lock(&self.online).keys().copied().collect()
    }

    /// True when `user` has a connection here.
    pub fn is_local(&self, user: i64) -> bool {
        lock(&self.online).contains_key(&user)
    }

    /// The local rooms whose roster is older than `max_age` (or never read).
    pub fn stale_rosters(&self, max_age: Duration) -> Vec<RoomId> {
        lock(&self.rooms)
            .iter()
            .filter(|(_, r)| r.roster_read.is_none_or(|t| t.elapsed() > max_age))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The room's roster changed in the store: it is re-read at the next presence tick.
    pub fn roster_changed(&self, room: &RoomId) {
        if let Some(local) = lock(&self.rooms).get_mut(room) {
            local.roster_read = None;
        }
    }

    pub fn set_roster(&self, room: &RoomId, roster: Vec<i64>) {
        if let Some(local) = lock(&self.rooms).get_mut(room) {
            local.roster = roster;
            local.roster_read = Some(Instant::now());
        }
    }

    /// Every user on a local room's roster or connected to one.
    pub fn watched_users(&self) -> Vec<i64> {
        let rooms = lock(&self.rooms);
        let mut users: Vec<i64> = rooms
            .values()
            .flat_map(|r| {
                r.roster
                    .iter()
                    .copied()
                    .chain(r.members.values().map(|m| m.user))
            })
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Compares every local room's announced presence with `status` and tells the room's
    /// local members about each change; a user missing from `status` keeps their state.
    pub fn announce_presence(&self, status: &HashMap<i64, bool>) {
        let mut rooms = lock(&self.rooms);
        for (room, local) in rooms.iter_mut() {
            let mut users: Vec<i64> = local
                .roster
                .iter()
                .copied()
                .chain(local.members.values().map(|m| m.user))
                .collect();
            users.sort_unstable();
            users.dedup();
            for user in users {
                // Unknown (a cache read failed, or the user arrived since): unchanged.
                let Some(&online) = status.get(&user) else {
                    continue;
                };
                let before = local.presence.insert(user, online);
                if before == Some(online) || (before.is_none() && !online) {
                    continue;
                }
                let text = Utf8Bytes::from(
                    ServerFrame::Presence {
                        room: room.to_string(),
                        user,
                        online,
                    }
                    .to_json(),
                );
                for member in local.members.values() {
                    member.offer(Out::Text(text.clone()), &self.metrics);
                }
            }
        }
    }
}

/// The `message` frame of a stored message.
pub(crate) fn message_frame(message: &ChatMessage) -> ServerFrame {
    ServerFrame::Message {
        room: message.room_id.clone(),
        id: message.seq,
        sender: message.sender_id,
        sender_name: message.sender_name.clone(),
        client_id: message.client_id.clone(),
        body: message.body.clone(),
        sent_at: sent_at(message),
    }
}

/// When a message was stored, as frames and history show it (RFC 3339).
pub(crate) fn sent_at(message: &ChatMessage) -> String {
    message
        .created_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
