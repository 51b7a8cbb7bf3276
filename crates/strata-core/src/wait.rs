//! [`eventually`]: how tests wait for state that settles (a connection gone, a message
//! stored, a gauge moved): by polling what they can observe until it holds, with a deadline,
//! never by sleeping for a time that is only hoped to be enough.
//!
//! Test support only: compiled with the `testing` feature.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] looks again: often enough to add little to a test's time, rarely
/// enough not to load what it observes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some`, and returns that value.
///
/// # Panics
/// When `within` passes first; the message names `what` was awaited.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let polls = AtomicU32::new(0);
        let n = eventually(Duration::from_secs(1), "the third poll", || async {
            let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waited 100ms for nothing")]
    async fn fails_at_the_deadline() {
        eventually(Duration::from_millis(100), "nothing", || async {
            None::<()>
        })
        .await;
    }
}
