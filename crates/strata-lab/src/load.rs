//! The load loops. Closed: `concurrency` workers, each with one keep-alive connection, send
//! back to back until the time or request bound. Open: a dispatcher thread walks the
//! schedule of intended send times and hands each request, at its time, to an idle
//! connection, a new one (up to `concurrency`) or the queue that the connections take from;
//! latency counts from the intended time, so a stalled server is charged for every request
//! that should have gone out meanwhile (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::conn::{Answer, Conn};
use crate::progress::progress;
use crate::record::{Outcome, Recorder};
use crate::report::LoadReport;
use crate::shop::Shop;
use crate::spec::{Scenario, Schedule, Target};
use crate::workload::{Call, Endpoint, Workload};
use crate::{Failure, LabError, LoadSpec};

/// Pause after a failed connect in a closed loop, so a dead target is probed a few hundred
/// times a second per worker instead of being spun on (each attempt still counts).
const CONNECT_BACKOFF: Duration = Duration::from_millis(5);
/// The dispatcher's longest sleep: how soon it notices a cancelled run.
const DISPATCH_NAP: Duration = Duration::from_millis(50);

/// Runs `spec` to its time or request bound.
///
/// # Errors
/// [`LabError::Spec`] for an invalid spec, [`LabError::Resolve`] or [`LabError::NoAddress`]
/// when the host does not resolve, [`LabError::Setup`] when the scenario's setup fails.
/// Failed requests are counted in the report, not returned.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LabError> {
    run_until(spec, CancellationToken::new()).await
}

/// Runs `spec` until its bounds or until `stop` is cancelled, whichever comes first. Requests
/// in flight when it stops are completed (or time out) and counted; requests of an open loop
/// still waiting for a connection are dropped.
///
/// # Errors
/// As [`run`].
pub async fn run_until(spec: &LoadSpec, stop: CancellationToken) -> Result<LoadReport, LabError> {
    let target = spec.validate()?;
    let addr = resolve(&target).await?;
    if let (Scenario::Chat, Some(schedule)) = (spec.scenario, &target.schedule) {
        let (tally, elapsed) = crate::chat::run(
            &format!("ws://{}", target.authority),
            spec.token.as_deref().unwrap_or_default(),
            spec.rooms,
            spec.listeners,
            schedule.clone(),
            stop,
        )
        .await?;
        return Ok(LoadReport::from_chat(spec, schedule, &tally, elapsed));
    }
    let host = target.authority.as_str().to_owned();
    let paths: Vec<String> = target.paths.iter().map(ToString::to_string).collect();
    let (workload, setup): (Arc<dyn Workload>, _) = match spec.scenario {
        // Validation gives every chat spec a schedule, handled above.
        Scenario::Endpoint | Scenario::Chat => (
            Arc::new(Endpoint::new(spec.method.as_str(), &host, &paths)),
            Vec::new(),
        ),
        Scenario::Shop => {
            let (shop, log) = Shop::prepare(
                addr,
                &host,
                spec.users,
                spec.connect_timeout,
                spec.request_timeout,
            )
            .await?;
            (Arc::new(shop), log)
        }
        Scenario::Carts => {
            let (cookies, log) = if spec.cart_cookies.is_empty() {
                crate::carts::make_carts(
                    addr,
                    &host,
                    spec.carts,
                    spec.connect_timeout,
                    spec.request_timeout,
                )
                .await?
            } else {
                (spec.cart_cookies.clone(), Vec::new())
            };
            (Arc::new(crate::carts::Carts::new(&host, cookies)), log)
        }
    };
    let steps = target.schedule.as_ref().map_or(0, |s| s.counts.len());
    let started = Instant::now();
    let run = Arc::new(Run {
        addr,
        connect_timeout: spec.connect_timeout,
        request_timeout: spec.request_timeout,
        instance_header: spec.instance_header.as_str().to_owned(),
        recorder: Recorder::new(started, workload.operations().len(), steps, spec.timeline),
        workload,
        stop,
        started,
    });
    let finished = CancellationToken::new();
    if spec.progress {
        let target_rate = target.schedule.clone();
        tokio::spawn(progress(Arc::clone(&run), target_rate, finished.clone()));
    }
    let result = match &target.schedule {
        None => closed(&run, spec).await,
        Some(schedule) => open(&run, schedule.clone(), spec.concurrency).await,
    };
    finished.cancel();
    result?;
    let elapsed = started.elapsed();
    Ok(LoadReport::new(
        spec,
        &target,
        &paths,
        &run.recorder,
        run.workload.operations(),
        &setup,
        elapsed,
    ))
}

/// Resolves the target's `host:port` once, before the clock starts.
async fn resolve(target: &Target) -> Result<SocketAddr, LabError> {
    let authority = target.host_port();
    let first = tokio::net::lookup_host(authority.as_str())
        .await
        .map_err(|source| LabError::Resolve {
            authority: authority.clone(),
            source,
        })?
        .next();
    first.ok_or(LabError::NoAddress { authority })
}

/// What every connection of a run shares.
pub(crate) struct Run {
    addr: SocketAddr,
    connect_timeout: Duration,
    request_timeout: Duration,
    instance_header: String,
    pub(crate) workload: Arc<dyn Workload>,
    pub(crate) recorder: Recorder,
    stop: CancellationToken,
    pub(crate) started: Instant,
}

impl Run {
    /// Sends `call` on `conn`, opening a connection first when there is none or the server
    /// has closed it. Returns when the request was written (or the connection attempted) and
    /// the outcome.
    async fn send(
        &self,
        conn: &mut Option<Conn>,
        call: &Call,
    ) -> (Instant, Result<Answer, Failure>) {
        if conn.as_mut().is_none_or(Conn::is_closed) {
            *conn = None;
            match Conn::open(self.addr, self.connect_timeout).await {
                Ok(opened) => {
                    self.recorder.connections.fetch_add(1, Ordering::Relaxed);
                    *conn = Some(opened);
                }
                Err(failure) => return (Instant::now(), Err(failure)),
            }
        }
        let Some(c) = conn.as_mut() else {
            return (Instant::now(), Err(Failure::Connect));
        };
        let sent = Instant::now();
        let result = timeout(
            self.request_timeout,
            c.exchange(&call.wire, &self.instance_header, false),
        )
        .await
        .unwrap_or(Err(Failure::Timeout));
        if result.is_err() {
            // The connection's state is unknown after a failure: start afresh.
            *conn = None;
        }
        (sent, result)
    }

    fn finish(
        &self,
        call: &Call,
        step: Option<usize>,
        intended: Instant,
        sent: Instant,
        result: &Result<Answer, Failure>,
    ) {
        let done = Instant::now();
        self.workload
            .answered(call, result.as_ref().ok().map(|answer| answer.status));
        self.recorder.record(&Outcome {
            op: call.op,
            step,
            intended,
            sent,
            done,
            result,
        });
    }

    /// Sleeps for `pause`, or less if the run is stopped meanwhile.
    async fn pause(&self, pause: Duration) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.stop.cancelled() => {}
        }
    }
}

/// The closed loop: `concurrency` workers until the deadline or the request bound.
async fn closed(run: &Arc<Run>, spec: &LoadSpec) -> Result<(), LabError> {
    let bounds = Arc::new(Tickets {
        deadline: run.started + spec.duration,
        max: spec.requests,
        issued: AtomicU64::new(0),
    });
    let mut workers = JoinSet::new();
    for _ in 0..spec.concurrency {
        workers.spawn(closed_worker(Arc::clone(run), Arc::clone(&bounds)));
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    Ok(())
}

/// The closed loop's bounds: a shared ticket counter and a deadline.
struct Tickets {
    deadline: Instant,
    max: Option<u64>,
    issued: AtomicU64,
}

impl Tickets {
    /// Claims the next request number, or `None` once any bound is reached.
    fn next(&self, stop: &CancellationToken) -> Option<u64> {
        if stop.is_cancelled() || Instant::now() >= self.deadline {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.max {
            Some(max) if n >= max => None,
            _ => Some(n),
        }
    }
}

/// One closed-loop worker: one connection at a time, one request at a time.
async fn closed_worker(run: Arc<Run>, tickets: Arc<Tickets>) {
    let mut conn = None;
    while let Some(ticket) = tickets.next(&run.stop) {
        let call = run.workload.call(ticket);
        let (sent, result) = run.send(&mut conn, &call).await;
        run.finish(&call, None, sent, sent, &result);
        if matches!(result, Err(Failure::Connect | Failure::ConnectTimeout)) {
            run.pause(CONNECT_BACKOFF).await;
        }
    }
}

/// A request of the schedule, handed to a connection at its time.
struct Job {
    ticket: u64,
    step: usize,
    intended: Instant,
}

/// The open loop's connections: the queue they take requests from and how many are free.
struct Pool {
    jobs: Mutex<mpsc::UnboundedReceiver<Job>>,
    /// Connections not yet claimed by a dispatched request.
    idle: AtomicUsize,
    opened: AtomicUsize,
}

/// The open loop: a dispatcher thread, connections as tasks; returns once every scheduled
/// request is answered (or failed) or the run is stopped.
async fn open(run: &Arc<Run>, schedule: Schedule, max_connections: usize) -> Result<(), LabError> {
    let (jobs, queue) = mpsc::unbounded_channel();
    let pool = Arc::new(Pool {
        jobs: Mutex::new(queue),
        idle: AtomicUsize::new(0),
        opened: AtomicUsize::new(0),
    });
    // Every connection task holds a sender; `recv` gives `None` once all have ended.
    let (alive, mut ended) = mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();
    let dispatcher = {
        let run = Arc::clone(run);
        let pool = Arc::clone(&pool);
        std::thread::Builder::new()
            .name("strata-lab-schedule".into())
            .spawn(move || {
                dispatch(
                    &run,
                    &schedule,
                    &pool,
                    &jobs,
                    &alive,
                    &runtime,
                    max_connections,
                );
            })
            .map_err(LabError::Thread)?
    };
    let _ = ended.recv().await;
    // The dispatcher held a sender too, so it has returned; joining it cannot block.
    let _ = dispatcher.join();
    Ok(())
}

/// Walks the schedule on a thread of its own: `std::thread::sleep` wakes within tens of
/// microseconds of the intended time, where the runtime's timer works in milliseconds.
fn dispatch(
    run: &Arc<Run>,
    schedule: &Schedule,
    pool: &Arc<Pool>,
    jobs: &mpsc::UnboundedSender<Job>,
    alive: &mpsc::Sender<()>,
    runtime: &tokio::runtime::Handle,
    max_connections: usize,
) {
    for ticket in 0..schedule.total() {
        let (step, offset) = schedule.at(ticket);
        let intended = run.started + offset;
        loop {
            if run.stop.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if now >= intended {
                break;
            }
            std::thread::sleep((intended - now).min(DISPATCH_NAP));
        }
        let claimed = pool
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed && pool.opened.load(Ordering::Relaxed) < max_connections {
            // A new connection, for this request; it counts itself free when done.
            pool.opened.fetch_add(1, Ordering::Relaxed);
            runtime.spawn(open_worker(
                Arc::clone(run),
                Arc::clone(pool),
                alive.clone(),
            ));
        }
        // Otherwise the request waits in the queue for the first connection free.
        if jobs
            .send(Job {
                ticket,
                step,
                intended,
            })
            .is_err()
        {
            return;
        }
    }
}

/// One open-loop connection: takes the next request due, sends it, frees itself.
async fn open_worker(run: Arc<Run>, pool: Arc<Pool>, _alive: mpsc::Sender<()>) {
    let mut conn = None;
    loop {
        let job = pool.jobs.lock().await.recv().await;
        let Some(job) = job else { break };
        if run.stop.is_cancelled() {
            continue;
        }
        let call = run.workload.call(job.ticket);
        let (sent, result) = run.send(&mut conn, &call).await;
        run.finish(&call, Some(job.step), job.intended, sent, &result);
        pool.idle.fetch_add(1, Ordering::AcqRel);
    }
}
