//! What the gateway thinks of its instances over time, sampled from its admin API every
//! 50 ms, and what the load's record says about failed requests: the figures each fault
//! reports (time to detect, time to recover, the window of failed requests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::docker::{ADMIN_TOKEN, gateway_instances};
use crate::load::{Kind, Outcome, Record};

/// One sample: when (ms since the load started) and each instance's `(source, health,
/// draining)`.
type Sample = (u64, Vec<(String, String, bool)>);

/// Samples the gateway's view of a pool until dropped.
pub struct GatewayWatch {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl GatewayWatch {
    pub fn start(admin_url: String, pool: &'static str, record: Record) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let into = samples.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let answer = http
                    .get(format!("{admin_url}/admin/pools"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await;
                let Ok(answer) = answer else { continue };
                let Ok(pools) = answer.json::<Value>().await else {
                    continue;
                };
                let at = record.now_ms();
                into.lock()
                    .unwrap()
                    .push((at, gateway_instances(&pools, pool)));
            }
        });
        Self { samples, task }
    }

    /// Milliseconds from `since` until the gateway stopped sending to `service` (its
    /// instance down, ejected, draining or gone), if it did.
    pub fn out_after(&self, service: &str, since: u64) -> Option<u64> {
        self.first(since, |instances| !serving(instances, service))
    }

    /// Milliseconds from `since` until the gateway sends to `service` again.
    pub fn back_after(&self, service: &str, since: u64) -> Option<u64> {
        self.first(since, |instances| serving(instances, service))
    }

    fn first(&self, since: u64, holds: impl Fn(&[(String, String, bool)]) -> bool) -> Option<u64> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .find(|(at, instances)| *at >= since && holds(instances))
            .map(|(at, _)| at - since)
    }
}

impl Drop for GatewayWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether an instance resolved from `http://SERVICE:port` is up and not draining.
fn serving(instances: &[(String, String, bool)], service: &str) -> bool {
    let name = format!("//{service}:");
    instances
        .iter()
        .any(|(from, health, draining)| from.contains(&name) && health == "up" && !draining)
}

/// The failed requests of one kind: how many, and the window from the first failure's end to
/// the last's (0 for one failure; `None` without failures).
#[derive(Debug, Default, Clone)]
pub struct Failures {
    pub total: usize,
    pub failed: usize,
    pub window_ms: Option<u64>,
    /// A few distinct reasons, for the report.
    pub reasons: Vec<String>,
}

pub fn failures(outcomes: &[Outcome], kind: Kind) -> Failures {
    let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
    let failed: Vec<&Outcome> = mine
        .iter()
        .copied()
        .filter(|o| o.failure.is_some())
        .collect();
    let mut reasons: Vec<String> = failed.iter().filter_map(|o| o.failure.clone()).collect();
    reasons.sort();
    reasons.dedup();
    reasons.truncate(4);
    Failures {
        total: mine.len(),
        failed: failed.len(),
        window_ms: match (failed.first(), failed.last()) {
            (Some(first), Some(last)) => Some(last.at_ms - first.at_ms),
            _ => None,
        },
        reasons,
    }
}
