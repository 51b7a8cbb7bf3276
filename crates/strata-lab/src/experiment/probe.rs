//! What the lab asks of its processes over HTTP, with the load generator's own client: is it
//! ready, what do its metrics say, and the gateway's admin calls.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::conn::{Conn, serialize};

/// Time for one probe or admin call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often readiness is polled: fine enough for start-up times of tens of milliseconds.
const READY_POLL: Duration = Duration::from_millis(5);

/// One request on a connection of its own; the status and body, `None` without an answer.
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let host = addr.to_string();
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    let wire = serialize(method, path, &host, headers, body.map(str::as_bytes));
    let answer = tokio::time::timeout(CALL_TIMEOUT, async {
        let mut conn = Conn::open(addr, CALL_TIMEOUT).await?;
        conn.exchange(&wire, "x-strata-instance", true).await
    })
    .await
    .ok()?
    .ok()?;
    let body = answer
        .body
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    Some((answer.status, body))
}

/// Polls `GET path` on `addr` until it answers 2xx; returns when it did. Bounded by `within`
/// and by `stop`.
///
/// # Errors
/// [`LabError::Experiment`] when `within` passes first, [`LabError::Stopped`] on `stop`.
pub(crate) async fn wait_ok(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    stop: &CancellationToken,
) -> Result<Instant, LabError> {
    let deadline = Instant::now() + within;
    loop {
        if stop.is_cancelled() {
            return Err(LabError::Stopped);
        }
        if let Some((status, _)) = call(addr, "GET", path, None).await
            && (200..300).contains(&status)
        {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            return Err(LabError::experiment(
                "ready",
                format!("http://{addr}{path} did not answer 2xx within {within:?}"),
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// The sum of the series of `name` on `addr`'s `/metrics` whose labels contain every one of
/// `labels` (`key="value"`); `None` when the metrics cannot be read.
pub(crate) async fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    let (status, text) = call(addr, "GET", "/metrics", None).await?;
    (status == 200).then(|| sum_series(&text, name, labels))
}

/// The sum of the samples of `name` (exactly, or with `_total` appended) in a Prometheus
/// exposition whose labels contain every one of `labels`.
pub(crate) fn sum_series(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            let named = metric == name || metric.strip_suffix("_total") == Some(name);
            (named && labels.iter().all(|l| label_text.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A gateway admin call that must succeed.
///
/// # Errors
/// [`LabError::Experiment`] naming the call when it gets no 2xx answer.
pub(crate) async fn admin(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, LabError> {
    match call(admin, method, path, body).await {
        Some((status, text)) if (200..300).contains(&status) => Ok(text),
        Some((status, text)) => Err(LabError::experiment(
            "gateway admin",
            format!("{method} {path}: status {status}: {text}"),
        )),
        None => Err(LabError::experiment(
            "gateway admin",
            format!("{method} {path}: no answer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_by_name_and_labels() {
        let text = "# HELP x\n\
                    strata_api_carts_held 12\n\
                    strata_api_carts_handed_over_total{direction=\"sent\"} 3\n\
                    strata_api_carts_handed_over_total{direction=\"received\"} 5\n\
                    strata_api_carts_handed_over_total{direction=\"received\",x=\"1\"} 1\n";
        assert_eq!(sum_series(text, "strata_api_carts_held", &[]), 12.0);
        assert_eq!(
            sum_series(
                text,
                "strata_api_carts_handed_over",
                &["direction=\"received\""]
            ),
            6.0
        );
        assert_eq!(sum_series(text, "missing", &[]), 0.0);
    }
}
