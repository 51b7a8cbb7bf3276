//! The live progress line: once a second on stderr, what the run has done so far.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::load::Run;
use crate::spec::Schedule;

/// Prints a line every second until `finished`: elapsed time, the rate of the last second
/// (and the schedule's, in an open loop), requests, errors (failed or not 2xx) and the
/// median and 99th percentile of the latency so far.
pub(crate) async fn progress(
    run: Arc<Run>,
    schedule: Option<Schedule>,
    finished: CancellationToken,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = finished.cancelled() => return,
        }
        let elapsed = run.started.elapsed();
        let (requests, errors) = run.recorder.counts();
        let total = run.recorder.total();
        let ms = |q| {
            total
                .latency
                .value_at_quantile(q)
                .map_or(0.0, |us| us as f64 / 1000.0)
        };
        let target = schedule
            .as_ref()
            .map(|s| {
                let step = usize::try_from(elapsed.as_nanos() / s.step.as_nanos().max(1))
                    .unwrap_or(usize::MAX)
                    .min(s.rates.len() - 1);
                format!(" (target {}/s)", s.rates[step])
            })
            .unwrap_or_default();
        eprintln!(
            "[{:>6.1} s] {:>8.0}/s{target}  requests {requests}  errors {errors}  p50 {:.3} ms  p99 {:.3} ms",
            elapsed.as_secs_f64(),
            (requests - last) as f64,
            ms(0.5),
            ms(0.99),
        );
        last = requests;
    }
}
