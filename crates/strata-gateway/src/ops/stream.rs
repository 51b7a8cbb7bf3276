//! `GET /admin/stream`: Server-Sent Events (`text/event-stream`), one `snapshot` event at
//! connect and one a second after, each a JSON object of every pool and instance and of the
//! [`sources`](super::sources):
//!
//! ```text
//! event: snapshot
//! id: 42
//! data: {"seq":42,"interval_ms":1000,"control":true,"pools":[{"name":"api",…,"instances":[…]}],"sources":[…]}
//! ```
//!
//! Per instance: `health` (`up`, `down`, `ejected`), `draining`, `in_flight`,
//! `requests_per_sec`, `errors_per_sec` (failed attempts and 5xx answers), `p99_ms` (of the
//! requests answered in the last interval, as the upper bound of its histogram bucket; absent
//! when none were), `share` (of the pool's answers in the last interval, 0..1),
//! `websockets_open` (chat connections through the gateway). `control` says whether
//! instances can be stopped and started ([`super::control`]).
//!
//! One task samples the gateway's own counters once a second, off the request path (the
//! counters are atomics the proxy adds to), and publishes the frame in a `watch` channel; each
//! client has a task that forwards the latest frame, skipping those it was too slow to take,
//! so a slow client costs no memory. At most `gateway.ops.max_clients` clients at once: one
//! more gets 429 `too_many_clients`. Streams end when the gateway shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde::Serialize;
use strata_core::Shutdown;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::sources::{SourceView, Sources};
use crate::balance::Algorithm;
use crate::balance::key::format_id;
use crate::health::HealthState;
use crate::membership::{Instance, Membership};
use crate::metrics::BucketCounts;

/// Time between two snapshots.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The live stream: the latest frame, and the clients watching it.
#[derive(Debug)]
pub struct Stream {
    latest: watch::Receiver<Bytes>,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
    stop: Shutdown,
}

impl Stream {
    /// Samples `membership` and `sources` every [`INTERVAL`] until `stop` is cancelled, for at
    /// most `max_clients` clients at once; `control` is whether instances can be stopped and
    /// started.
    pub fn start(
        membership: Arc<Membership>,
        sources: Sources,
        control: bool,
        max_clients: usize,
        stop: Shutdown,
    ) -> Self {
        let mut sampler = Sampler {
            membership,
            sources,
            control,
            previous: HashMap::new(),
            at: Instant::now(),
            seq: 0,
        };
        let (publish, latest) = watch::channel(sampler.frame());
        let until = stop.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: the frame above is the first snapshot.
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = until.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                publish.send_replace(sampler.frame());
            }
        });
        Self {
            latest,
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients,
            stop,
        }
    }

    /// The most clients served at once (`gateway.ops.max_clients`).
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// A new client's stream, starting with the latest snapshot; `None` when `max_clients`
    /// are connected already.
    pub fn subscribe(&self) -> Option<EventStream> {
        let taken = self
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_clients).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return None;
        }
        let slot = Slot(Arc::clone(&self.clients));
        // One frame in hand at most: a client that reads slowly gets the latest, not a queue.
        let (send, frames) = mpsc::channel(1);
        let (mut latest, stop) = (self.latest.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let frame = latest.borrow_and_update().clone();
                tokio::select! {
                    () = stop.cancelled() => return,
                    sent = send.send(frame) => if sent.is_err() { return },
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = latest.changed() => if changed.is_err() { return },
                }
            }
        });
        Some(EventStream {
            frames,
            _slot: slot,
        })
    }
}

/// One client's place among `max_clients`, given back when its stream is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body of one stream client: the frames, as they come; it ends when the
/// gateway shuts down.
#[derive(Debug)]
pub struct EventStream {
    frames: mpsc::Receiver<Bytes>,
    _slot: Slot,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Makes snapshots: the counters' differences since the one before.
struct Sampler {
    membership: Arc<Membership>,
    sources: Sources,
    control: bool,
    /// Counters of each `(pool, instance)` at the last snapshot.
    previous: HashMap<(String, String), Counted>,
    at: Instant,
    seq: u64,
}

/// An instance's counters at one moment.
#[derive(Clone, Copy)]
struct Counted {
    served: u64,
    errors: u64,
    durations: BucketCounts,
}

#[derive(Serialize)]
struct Snapshot {
    seq: u64,
    interval_ms: u64,
    control: bool,
    pools: Vec<PoolSnapshot>,
    sources: Vec<SourceView>,
}

#[derive(Serialize)]
struct PoolSnapshot {
    name: String,
    algorithm: Algorithm,
    requests_per_sec: f64,
    instances: Vec<InstanceSnapshot>,
}

#[derive(Serialize)]
struct InstanceSnapshot {
    address: String,
    id: String,
    health: HealthState,
    draining: bool,
    weight: u32,
    effective_weight: u32,
    in_flight: u64,
    requests_per_sec: f64,
    errors_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
    share: f64,
    websockets_open: i64,
    requests_served: u64,
}

impl Sampler {
    /// The next snapshot as an SSE frame.
    fn frame(&mut self) -> Bytes {
        let snapshot = self.sample();
        match serde_json::to_string(&snapshot) {
            Ok(json) => Bytes::from(format!(
                "event: snapshot\nid: {}\ndata: {json}\n\n",
                snapshot.seq
            )),
            Err(e) => {
                tracing::error!(error = %e, "ops snapshot could not be serialised");
                Bytes::from_static(b": no snapshot\n\n")
            }
        }
    }

    fn sample(&mut self) -> Snapshot {
        let now = Instant::now();
        let seconds = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.seq += 1;
        let table = self.membership.snapshot();
        let mut seen = HashMap::with_capacity(self.previous.len());
        let pools = table
            .pools()
            .iter()
            .map(|pool| {
                let mut served_total = 0;
                let mut instances: Vec<(InstanceSnapshot, u64)> = pool
                    .instances()
                    .iter()
                    .map(|instance| {
                        let key = (pool.name().to_owned(), instance.address().to_owned());
                        let now = counted(instance);
                        let before = self.previous.get(&key).copied().unwrap_or(now);
                        seen.insert(key, now);
                        let served = now.served.saturating_sub(before.served);
                        served_total += served;
                        let errors = now.errors.saturating_sub(before.errors);
                        let view = InstanceSnapshot {
                            address: instance.address().to_owned(),
                            id: format_id(instance.id()),
                            health: instance.health().state(),
                            draining: instance.is_draining(),
                            weight: instance.weight(),
                            effective_weight: instance.effective_weight(),
                            in_flight: instance.in_flight(),
                            requests_per_sec: per_second(served, seconds),
                            errors_per_sec: per_second(errors, seconds),
                            p99_ms: now
                                .durations
                                .quantile_since(&before.durations, 0.99)
                                .map(|d| d.as_secs_f64() * 1000.0),
                            share: 0.0,
                            websockets_open: instance.metrics().websockets_open.get(),
                            requests_served: now.served,
                        };
                        (view, served)
                    })
                    .collect();
                for (view, served) in &mut instances {
                    if served_total > 0 {
                        #[allow(clippy::cast_precision_loss)]
                        let share = *served as f64 / served_total as f64;
                        view.share = share;
                    }
                }
                PoolSnapshot {
                    name: pool.name().to_owned(),
                    algorithm: pool.algorithm(),
                    requests_per_sec: per_second(served_total, seconds),
                    instances: instances.into_iter().map(|(view, _)| view).collect(),
                }
            })
            .collect();
        // Instances gone from the table are forgotten.
        self.previous = seen;
        Snapshot {
            seq: self.seq,
            interval_ms: u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX),
            control: self.control,
            pools,
            sources: self.sources.view(),
        }
    }
}

fn counted(instance: &Instance) -> Counted {
    Counted {
        served: instance.served(),
        errors: instance.metrics().errors(),
        durations: instance.metrics().duration.buckets(),
    }
}

/// `count` over `seconds`, 0 over no time.
fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    // Two decimals are all a person reads, and the frames stay short.
    (count / seconds * 100.0).round() / 100.0
}
