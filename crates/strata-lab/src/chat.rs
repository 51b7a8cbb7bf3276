//! The chat scenario: listeners in rooms and one sender per room, over the chat protocol's
//! WebSocket (docs/chat-protocol.md), reporting fan-out latency: from a message's intended
//! send time to its receipt by each listener of the room, and the sender's ack latency.
//!
//! Every connection logs in with one token of a `support` or `admin` user (the only ones
//! agents' lobbies admit), joins `lobby-b<run>-<n>` and stays. Messages follow the run's
//! schedule (open loop: a slow chat tier cannot slow it), message `n` to room `n % rooms`;
//! each carries its number in its `client_id`, so a receipt finds its intended send time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::histogram::Histogram;
use crate::record::LATE;
use crate::spec::Schedule;
use crate::workload::run_id;

/// Highest message rate per room: the server allows each connection 20 frames/s (bursts of
/// 40) and closes a flooding one, and each room has one sender.
pub const MAX_CHAT_RATE_PER_ROOM: f64 = 20.0;
/// Connections opened at once while the rooms fill.
const CONNECT_PARALLELISM: usize = 64;
/// How long receipts and acks may trail the last message before the run ends.
const GRACE: Duration = Duration::from_secs(5);
/// How long one connection may take to open and join its room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a chat run observed.
#[derive(Debug, Default)]
pub(crate) struct ChatTally {
    /// Messages written to a sender's connection.
    pub(crate) sent: u64,
    /// Messages whose write failed (the connection was gone).
    pub(crate) send_failed: u64,
    /// Acks received (the message is stored).
    pub(crate) acked: u64,
    /// Receipts by listeners.
    pub(crate) received: u64,
    /// `error` frames answered to a send (rate limited, unavailable…), by code.
    pub(crate) refused: std::collections::BTreeMap<String, u64>,
    /// From intended send time to the ack.
    pub(crate) ack: Histogram,
    /// From intended send time to each listener's receipt.
    pub(crate) fan_out: Histogram,
    /// First and last send, from the start.
    pub(crate) sends: Option<(Duration, Duration)>,
    /// Listeners per room, so expected receipts = sent × listeners.
    pub(crate) listeners: u64,
    pub(crate) connections: u64,
    /// Messages written more than [`LATE`] after their intended time, and the longest lag.
    pub(crate) late: u64,
    pub(crate) max_lag: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Everything the connections share.
struct Shared {
    started: Instant,
    schedule: Schedule,
    prefix: String,
    tally: Mutex<ChatTally>,
    /// Acks and receipts still due, to end the run early once all came.
    outstanding: AtomicU64,
}

impl Shared {
    /// One ack or receipt came (never below zero: a duplicate is not expected, but harmless).
    fn arrived(&self) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The message number of one of this run's `client_id`s.
    fn ticket(&self, client_id: &str) -> Option<u64> {
        client_id.strip_prefix(&self.prefix)?.parse().ok()
    }

    fn intended(&self, ticket: u64) -> Instant {
        self.started + self.schedule.at(ticket).1
    }
}

/// Runs the chat scenario against `base` (`ws://host:port`).
///
/// # Errors
/// [`LabError::Setup`] when a connection cannot open or join its room.
pub(crate) async fn run(
    base: &str,
    token: &str,
    rooms: usize,
    listeners: usize,
    schedule: Schedule,
    stop: CancellationToken,
) -> Result<(ChatTally, Duration), LabError> {
    let run = run_id();
    let room_names: Vec<String> = (0..rooms).map(|r| format!("lobby-b{run}-{r}")).collect();
    let url = |room: &str| format!("{base}/api/v1/chat/ws?room={room}&token={token}");

    // Listeners first, then the senders: every message has its whole audience.
    let mut opened = Vec::with_capacity(rooms * (listeners + 1));
    let mut pending = JoinSet::new();
    let wanted: Vec<(usize, bool)> = (0..rooms)
        .flat_map(|r| (0..listeners).map(move |_| (r, false)))
        .chain((0..rooms).map(|r| (r, true)))
        .collect();
    let mut next = 0;
    while next < wanted.len() || !pending.is_empty() {
        while next < wanted.len() && pending.len() < CONNECT_PARALLELISM {
            let (r, sender) = wanted[next];
            let (url, room) = (url(&room_names[r]), room_names[r].clone());
            pending.spawn(async move { (r, sender, join(&url, &room).await) });
            next += 1;
        }
        if let Some(joined) = pending.join_next().await {
            let (r, sender, ws) = joined?;
            opened.push((r, sender, ws?));
        }
    }

    let total = schedule.total();
    let shared = Arc::new(Shared {
        started: Instant::now(),
        prefix: format!("b{run}-"),
        outstanding: AtomicU64::new(total * (listeners as u64 + 1)),
        tally: Mutex::new(ChatTally {
            listeners: listeners as u64,
            connections: opened.len() as u64,
            ..ChatTally::default()
        }),
        schedule,
    });
    let done = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for (r, sender, ws) in opened {
        let (shared, done) = (Arc::clone(&shared), done.clone());
        if sender {
            let room = room_names[r].clone();
            let stop = stop.clone();
            tasks.spawn(send(ws, room, r as u64, rooms as u64, shared, done, stop));
        } else {
            tasks.spawn(listen(ws, shared, done));
        }
    }
    // The schedule's end, then the trailing acks and receipts (or the grace period).
    let last = shared.intended(total.saturating_sub(1));
    tokio::select! {
        () = tokio::time::sleep_until(last.into()) => {}
        () = stop.cancelled() => {}
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    while shared.outstanding.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
        && !stop.is_cancelled()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = shared.started.elapsed();
    done.cancel();
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *lock(&shared.tally));
    Ok((tally, elapsed))
}

/// Opens a connection to `url` and waits until it has joined `room`.
async fn join(url: &str, room: &str) -> Result<Ws, LabError> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let setup = |message: String| LabError::setup("chat join", message);
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| setup(format!("{room}: {e}")))?;
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| setup(format!("{room}: {e}")))?;
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                match value["type"].as_str() {
                    Some("joined") => return Ok(ws),
                    Some("error") => return Err(setup(format!("{room}: {text}"))),
                    _ => {}
                }
            }
        }
        Err(setup(format!("{room}: closed before joining")))
    };
    tokio::time::timeout(JOIN_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(setup(format!("{room}: not joined within {JOIN_TIMEOUT:?}"))))
}

/// A room's sender: message `n` (every `rooms`-th from `first`) at its intended time; its
/// reader takes the acks.
async fn send(
    ws: Ws,
    room: String,
    first: u64,
    rooms: u64,
    shared: Arc<Shared>,
    done: CancellationToken,
    stop: CancellationToken,
) {
    let (mut sink, mut stream) = ws.split();
    let reader = {
        let (shared, done) = (Arc::clone(&shared), done.clone());
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = stream.next() => frame,
                    () = done.cancelled() => return,
                };
                let Some(Ok(Message::Text(text))) = frame else {
                    if frame.is_none() || matches!(frame, Some(Err(_))) {
                        return;
                    }
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                let ticket = value["client_id"].as_str().and_then(|c| shared.ticket(c));
                match (value["type"].as_str(), ticket) {
                    (Some("ack"), Some(n)) => {
                        let latency = micros(shared.intended(n).elapsed());
                        let mut t = lock(&shared.tally);
                        t.acked += 1;
                        t.ack.record(latency);
                        drop(t);
                        shared.arrived();
                    }
                    (Some("error"), Some(_)) => {
                        let code = value["code"].as_str().unwrap_or("error").to_owned();
                        *lock(&shared.tally).refused.entry(code).or_default() += 1;
                    }
                    _ => {}
                }
            }
        })
    };
    let mut n = first;
    while n < shared.schedule.total() && !stop.is_cancelled() {
        let intended = shared.intended(n);
        tokio::select! {
            () = tokio::time::sleep_until(intended.into()) => {}
            () = stop.cancelled() => break,
        }
        let frame = json!({
            "type": "send",
            "room": room,
            "client_id": format!("{}{n}", shared.prefix),
            "body": format!("bench message {n}"),
        });
        let lag = intended.elapsed();
        let written = sink.send(Message::Text(frame.to_string().into())).await;
        let at = shared.started.elapsed();
        let mut t = lock(&shared.tally);
        if lag > LATE {
            t.late += 1;
        }
        t.max_lag = t.max_lag.max(lag);
        if written.is_ok() {
            t.sent += 1;
            t.sends = Some(t.sends.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
        } else {
            t.send_failed += 1;
        }
        n += rooms;
    }
    done.cancelled().await;
    let _ = sink.close().await;
    let _ = reader.await;
}

/// A listener: counts the receipts of this run's messages.
async fn listen(ws: Ws, shared: Arc<Shared>, done: CancellationToken) {
    let (mut sink, mut stream) = ws.split();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = done.cancelled() => break,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                // Cheap test before parsing: only this run's messages count.
                if !text.contains(&shared.prefix) {
                    continue;
                }
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] != "message" {
                    continue;
                }
                if let Some(n) = value["client_id"].as_str().and_then(|c| shared.ticket(c)) {
                    let latency = micros(shared.intended(n).elapsed());
                    let mut t = lock(&shared.tally);
                    t.received += 1;
                    t.fan_out.record(latency);
                    drop(t);
                    shared.arrived();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let _ = sink.close().await;
}
