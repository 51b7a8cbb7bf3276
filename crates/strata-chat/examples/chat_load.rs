//! Load client of `bench/chat.sh`: opens many chat connections, measures the idle memory per
//! connection of the given processes, then drives a message rate and reports fan-out latency
//! (send to receipt by every member) and ack latency (send to the sender's `ack`, which
//! comes after the commit) as one JSON line.
//!
//! One sender per room sends every `rooms / RATE` seconds. With `STAGGER=1` (the default)
//! the senders' phases are spread evenly over that period, so the instances see a steady
//! `RATE` messages/s, as from independent clients; with `STAGGER=0` every sender fires at
//! the same instant, a burst of one message per room at once.
//!
//! Environment: `URLS` (comma-separated gateway URLs; connections are spread over them),
//! `SECRET` (the token secret), `CONNS` (10000), `ROOM_SIZE` (10), `RATE` (messages/s, 1000),
//! `SECS` (10), `STAGGER` (1), `PIDS` (comma-separated pids whose RSS is measured),
//! `SOURCES` (loopback source addresses to spread over, 1), `SETTLE` (seconds between the
//! last connection and the measurements, 12: the instances announce the presence of every
//! user that came online to its room at their next presence tick, every half heartbeat, a
//! burst of ten frames per connection that would otherwise land in the latency window).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use strata_chat::client::ws_url;
use strata_chat::protocol::{ClientFrame, ServerFrame};
use strata_core::auth::{TokenKey, TokenUser, UserRole};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Prints the receipts' latency per second of send time (p50, p99, max), to tell a stall that
/// hits one second from a slowness spread over the run.
fn timeline(receipts: &[(f64, f64)]) {
    let Some(start) = receipts
        .iter()
        .map(|&(sent, _)| sent)
        .min_by(f64::total_cmp)
    else {
        return;
    };
    let mut seconds: Vec<Vec<f64>> = Vec::new();
    for &(sent, latency) in receipts {
        // Truncation is the point: the whole second the message was sent in.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let second = ((sent - start) / 1000.0) as usize;
        if seconds.len() <= second {
            seconds.resize_with(second + 1, Vec::new);
        }
        seconds[second].push(latency);
    }
    for (second, latencies) in seconds.iter_mut().enumerate() {
        latencies.sort_by(f64::total_cmp);
        eprintln!(
            "second {second}: {} receipts, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            percentile(latencies, 50.0),
            percentile(latencies, 99.0),
            latencies.last().copied().unwrap_or(0.0),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::var("URLS")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let secret = std::env::var("SECRET")?;
    let key = TokenKey::new(secret.as_bytes(), "k1")?;
    let conns: usize = env("CONNS", 10_000);
    let room_size: usize = env("ROOM_SIZE", 10);
    let rate: u64 = env("RATE", 1000);
    let secs: u64 = env("SECS", 10);
    let sources: u8 = env("SOURCES", 1);
    let stagger: u8 = env("STAGGER", 1);
    let settle: u64 = env("SETTLE", 12);
    let pids: Vec<u32> = std::env::var("PIDS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let rooms = conns.div_ceil(room_size);
    // Small buffers, like the server's: tungstenite zero-fills its read buffer up to the
    // configured size on every read, and the default (128 KiB) made this client, which
    // shares the cores with what it measures, the busiest process of the benchmark.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);

    let rss_before = rss_kib(&pids);
    let epoch = Instant::now();
    // (send time, latency) of every receipt, in milliseconds.
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<(f64, f64)>();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<f64>();
    let sent = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = watch::channel(false);
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(200));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let room = format!("lobby-b{}", i % rooms);
        let sender = i < rooms; // one sender per room
        let id = i64::try_from(i).unwrap_or(0) + 1;
        let token = key.issue(
            &TokenUser {
                id,
                email: format!("user{id}@example.com"),
                role: UserRole::Support,
            },
            Duration::from_secs(3600),
        )?;
        let url = ws_url(&urls[i % urls.len()], Some(&token), Some(&room), None);
        let source = 1 + u8::try_from(i % usize::from(sources.max(1))).unwrap_or(0);
        let (lat_tx, ack_tx, mut go_rx) = (lat_tx.clone(), ack_tx.clone(), go_rx.clone());
        let sent = sent.clone();
        let (connected, failed, gate) = (connected.clone(), failed.clone(), gate.clone());
        let per_sender = Duration::from_secs_f64(rooms as f64 / rate as f64);
        // Sender `i` of `rooms` fires `i / rooms` of a period after the start.
        let phase = if stagger == 0 {
            per_sender
        } else {
            per_sender.mul_f64((1 + i) as f64 / rooms as f64)
        };
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = async {
                let uri: axum::http::Uri = url.parse().ok()?;
                let host = uri.authority()?.as_str().to_owned();
                let addr: SocketAddr = host.parse().ok()?;
                let socket = TcpSocket::new_v4().ok()?;
                socket
                    .bind(SocketAddr::from(([127, 0, 0, source], 0)))
                    .ok()?;
                let stream = socket.connect(addr).await.ok()?;
                stream.set_nodelay(true).ok()?;
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                        .await
                        .ok()?;
                Some(ws)
            }
            .await;
            drop(permit);
            let Some(ws) = ws else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let (mut sink, mut stream) = ws.split();
            let mut tick = tokio::time::interval(per_sender);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    frame = stream.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let now = epoch.elapsed().as_secs_f64() * 1000.0;
                            match serde_json::from_str(&text) {
                                Ok(ServerFrame::Message { body, .. }) => {
                                    if let Ok(sent) = body.parse::<f64>() {
                                        let _ = lat_tx.send((sent, now - sent));
                                    }
                                }
                                // The client id ends with the send time.
                                Ok(ServerFrame::Ack { client_id, .. }) => {
                                    if let Some(sent) = client_id
                                        .rsplit('-')
                                        .next()
                                        .and_then(|t| t.parse::<f64>().ok())
                                    {
                                        let _ = ack_tx.send(now - sent);
                                    }
                                }
                                _ => {}
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    _ = tick.tick(), if sender && *go_rx.borrow() => {
                        n += 1;
                        let at = format!("{:.3}", epoch.elapsed().as_secs_f64() * 1000.0);
                        let frame = ClientFrame::Send {
                            room: room.clone(),
                            client_id: format!("{i}-{n}-{at}"),
                            body: at,
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        let text = serde_json::to_string(&frame).unwrap_or_default();
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    changed = go_rx.changed(), if sender && !*go_rx.borrow() => {
                        if changed.is_err() { return; }
                        // Ticks missed while waiting must not burst out now.
                        tick.reset_at(tokio::time::Instant::now() + phase);
                    }
                }
            }
        }));
    }
    let connect_started = Instant::now();
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < conns
        && connect_started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let rss_idle = rss_kib(&pids);
    let open = connected.load(Ordering::Relaxed);
    eprintln!(
        "{open} connected, {} failed in {connect_secs:.1} s",
        failed.load(Ordering::Relaxed)
    );

    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let _ = go_tx.send(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for task in &tasks {
        task.abort();
    }
    drop(lat_tx);
    drop(ack_tx);
    let mut receipts = Vec::new();
    while let Ok(r) = lat_rx.try_recv() {
        receipts.push(r);
    }
    timeline(&receipts);
    let mut latencies: Vec<f64> = receipts.iter().map(|&(_, l)| l).collect();
    latencies.sort_by(f64::total_cmp);
    let mut acks = Vec::new();
    while let Ok(l) = ack_rx.try_recv() {
        acks.push(l);
    }
    acks.sort_by(f64::total_cmp);
    let per_conn = if open > 0 {
        (rss_idle.saturating_sub(rss_before) as f64) / open as f64
    } else {
        0.0
    };
    println!(
        "{}",
        serde_json::json!({
            "connections": open,
            "failed_connections": failed.load(Ordering::Relaxed),
            "connect_secs": (connect_secs * 10.0).round() / 10.0,
            "rooms": rooms,
            "rate_per_sec": rate,
            "secs": secs,
            "staggered": stagger != 0,
            "sent": sent.load(Ordering::Relaxed),
            "acks": acks.len(),
            "ack_p50_ms": (percentile(&acks, 50.0) * 100.0).round() / 100.0,
            "ack_p99_ms": (percentile(&acks, 99.0) * 100.0).round() / 100.0,
            "receipts": latencies.len(),
            "fanout_p50_ms": (percentile(&latencies, 50.0) * 100.0).round() / 100.0,
            "fanout_p99_ms": (percentile(&latencies, 99.0) * 100.0).round() / 100.0,
            "rss_before_kib": rss_before,
            "rss_idle_kib": rss_idle,
            "idle_kib_per_connection": (per_conn * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
