//! `strata lab`: the stateful-vs-stateless experiment. The same cart service runs in its two
//! designs — *local* carts (stateful: each cart in the memory of one api instance, with that
//! instance's log) and *shared* carts (stateless: carts in the store, any instance serves any
//! cart) — on this machine, under the same load from the load generator, and every claim of
//! the usual table gets a measured figure for each design beside it.
//!
//! Per mode, [`run`] measures the start-up of one api process holding 0, N and M carts
//! ([`startup`]), then starts one deployment (a gateway and api processes,
//! [`cluster::Cluster`]) and puts it through phases, each under an open-loop carts load with
//! a timeline: a steady run (latency, CPU, memory), idle, one more instance (scale out), one
//! fewer (scale in) and one killed with SIGKILL and restarted as a supervisor would.
//! [`rows`] turns the figures into the claims table with verdicts computed from them;
//! [`report`] writes `report.md`, `report.html` (charts by [`chart`]) and `report.json`.

mod chart;
mod cluster;
mod phases;
mod probe;
mod process;
pub mod report;
mod rows;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::LabError;
pub use phases::{EventRun, Measured, StartupPoint, Steady};
pub use report::{Figure, LabReport, Row, Verdict};

/// Where the carts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Stateful: `carts.mode = "local"`.
    Local,
    /// Stateless: `carts.mode = "shared"`.
    Shared,
}

impl Mode {
    /// Both, stateful first (the claims table's order).
    pub const BOTH: [Mode; 2] = [Mode::Local, Mode::Shared];

    /// The value of `carts.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Shared => "shared",
        }
    }

    /// The design's name in the report.
    pub fn design(self) -> &'static str {
        match self {
            Mode::Local => "stateful",
            Mode::Shared => "stateless",
        }
    }
}

/// How much the lab does: `--quick` (CI) or the full run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub quick: bool,
    /// Carts held at the start-up measurements.
    pub startup_carts: Vec<u64>,
    /// Carts the load reads and updates.
    pub carts: usize,
    /// Carts each deployment holds besides: preloaded by the stateful instances (split among
    /// them), put in the store for the stateless ones; what the scaling steps move and a
    /// restart reloads.
    pub held_carts: u64,
    /// Requests per second of every load run (half reads, half updates).
    pub rate: f64,
    /// Length of the steady run.
    pub steady_secs: f64,
    /// Length of the idle measurement.
    pub idle_secs: f64,
    /// Length of each event's run, and when in it the event happens.
    pub event_run_secs: f64,
    pub event_at_secs: f64,
    /// Width of a timeline slice.
    pub slice_secs: f64,
    /// Longest wait for every cart to be served again after the kill.
    pub recovery_bound_secs: f64,
}

impl Plan {
    /// The plan of `strata lab` (`quick`: `strata lab --quick`).
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                startup_carts: vec![0, 100_000, 300_000],
                carts: 200,
                held_carts: 50_000,
                rate: 100.0,
                steady_secs: 5.0,
                idle_secs: 3.0,
                event_run_secs: 6.0,
                event_at_secs: 1.5,
                slice_secs: 0.25,
                recovery_bound_secs: 30.0,
            }
        } else {
            Plan {
                quick,
                startup_carts: vec![0, 100_000, 1_000_000],
                carts: 5_000,
                held_carts: 1_000_000,
                rate: 400.0,
                steady_secs: 30.0,
                idle_secs: 10.0,
                event_run_secs: 30.0,
                event_at_secs: 10.0,
                slice_secs: 0.5,
                recovery_bound_secs: 300.0,
            }
        }
    }
}

/// What `strata lab` is given.
#[derive(Debug, Clone)]
pub struct LabSettings {
    /// The `strata` executable whose `serve` roles the lab starts.
    pub exe: PathBuf,
    /// Directory of the report (made if missing); process logs and data go under it too.
    pub out: PathBuf,
    pub plan: Plan,
    /// When the run started, as the report names it (e.g. `2026-12-06T12:00:00Z`).
    pub timestamp: String,
}

/// Runs the experiment and writes the report under `settings.out`.
///
/// # Errors
/// [`LabError`] when a process cannot be started or get ready, a step fails, a report file
/// cannot be written, or `stop` is cancelled ([`LabError::Stopped`]). Every child process is
/// killed before this returns, whatever the outcome.
pub async fn run(settings: &LabSettings, stop: CancellationToken) -> Result<LabReport, LabError> {
    std::fs::create_dir_all(&settings.out).map_err(|source| LabError::Write {
        path: settings.out.clone(),
        source,
    })?;
    let host = cluster::Host {
        exe: settings.exe.clone(),
        logs: settings.out.join("logs"),
        work: settings.out.join("work"),
        stop: stop.clone(),
    };
    let plan = &settings.plan;
    let measured = tokio::select! {
        measured = phases::measure(&host, plan) => measured?,
        () = stop.cancelled() => return Err(LabError::Stopped),
    };
    // The data directories are large (a million carts) and of no use once measured.
    let _ = std::fs::remove_dir_all(&host.work);
    let report = LabReport::new(settings, &measured);
    report.write(&settings.out)?;
    Ok(report)
}

/// `secs` as a [`Duration`] (negative or not finite: zero).
fn secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}
