//! The operations view against `strata up` under steady load: stopping an api instance from
//! the page shows it unhealthy with its share of requests gone to the others (on the page and
//! in the gateway's metrics), starting it brings it back. Photographed before, during, after.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fantoccini::Locator;
use tokio::time::Instant;

use crate::driver::{Browser, Driver, WAIT};
use crate::harness::{gateway_requests_by_instance, spawn_up};

/// The background load: at most this many requests…
const LOAD_MAX_REQUESTS: u64 = 20_000;
/// …over at most this long, one every few milliseconds.
const LOAD_MAX_TIME: Duration = Duration::from_secs(120);
const LOAD_PAUSE: Duration = Duration::from_millis(10);

/// Steady requests through the gateway until stopped (or its bounds are reached); counts the
/// answers that were not 200.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<u64>,
}

impl Load {
    fn start(url: String) -> Load {
        let (stop, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop_, failed_) = (Arc::clone(&stop), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            let mut sent = 0;
            while !stop_.load(Ordering::Relaxed)
                && sent < LOAD_MAX_REQUESTS
                && started.elapsed() < LOAD_MAX_TIME
            {
                sent += 1;
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {}
                    _ => {
                        failed_.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(LOAD_PAUSE).await;
            }
            sent
        });
        Load { stop, failed, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.task.await.unwrap();
        (sent, self.failed.load(Ordering::Relaxed))
    }
}

/// The row of api instance `addr` as the page shows it: (health text, share in percent).
async fn row(browser: &Browser, addr: SocketAddr) -> Option<(String, u32)> {
    let script = r#"
        const row = document.querySelector(`tr[data-pool="api"][data-address="${arguments[0]}"]`);
        if (!row) return null;
        return [row.querySelector(".health").textContent, row.querySelector(".share").textContent];
    "#;
    let value = browser
        .client
        .execute(script, vec![serde_json::json!(addr.to_string())])
        .await
        .expect("read the row");
    let cells = value.as_array()?;
    let health = cells[0].as_str()?.to_owned();
    let share = cells[1].as_str()?.trim_end_matches('%').parse().ok()?;
    Some((health, share))
}

/// Waits until `condition` holds of every api row (address → health, share), within twice
/// [`WAIT`] (health checks, then a full second of traffic).
async fn wait_rows(
    browser: &Browser,
    addrs: &[SocketAddr],
    what: &str,
    condition: impl Fn(&BTreeMap<SocketAddr, (String, u32)>) -> bool,
) {
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let mut rows = BTreeMap::new();
        for &addr in addrs {
            if let Some(r) = row(browser, addr).await {
                rows.insert(addr, r);
            }
        }
        if rows.len() == addrs.len() && condition(&rows) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen; the rows say {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks the `action` button of api instance `addr` and waits for the page to announce it.
async fn click(browser: &Browser, addr: SocketAddr, action: &str, announced: &str) {
    let selector =
        format!(r#"tr[data-pool="api"][data-address="{addr}"] button[data-action="{action}"]"#);
    browser
        .wait(Locator::Css(&selector))
        .await
        .click()
        .await
        .expect("click");
    let text = format!("{announced} api {addr}.");
    browser
        .wait_text(&format!("the page announces {text:?}"), |t| {
            t.contains(&text)
        })
        .await;
}

/// Requests each instance served over `window`, from the gateway's metrics.
async fn served_during(
    client: &reqwest::Client,
    admin: SocketAddr,
    window: Duration,
) -> BTreeMap<String, u64> {
    let before = gateway_requests_by_instance(client, admin).await;
    tokio::time::sleep(window).await;
    let after = gateway_requests_by_instance(client, admin).await;
    after
        .into_iter()
        .map(|(instance, n)| {
            let was = before.get(&instance).copied().unwrap_or(0);
            (instance, n - was)
        })
        .collect()
}

#[tokio::test]
async fn stopping_an_instance_from_the_page_moves_its_share_to_the_others() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let up = spawn_up(&["--api", "3", "--chat", "1"]).await;
    let api: Vec<SocketAddr> = up.instances("api").iter().map(|r| r.addr).collect();
    assert_eq!(api.len(), 3);
    let (target, others) = (api[0], &api[1..]);
    let client = reqwest::Client::new();
    let load = Load::start(up.url("/api/v1/products?per_page=1"));

    let browser = driver.browser().await;
    browser.open(&format!("http://{}/ops", up.admin)).await;
    browser
        .wait_text("the stream is live", |t| t.contains("Live."))
        .await;
    wait_rows(&browser, &api, "every instance up with a share", |rows| {
        rows.values()
            .all(|(health, share)| health == "up" && *share > 0)
    })
    .await;
    browser
        .wait_text("the worker's figures", |t| t.contains("dead letters"))
        .await;
    browser.screenshot("ops-before").await;

    click(&browser, target, "stop", "Stopped").await;
    wait_rows(
        &browser,
        &api,
        "the stopped instance down, its share gone to the others",
        |rows| {
            let (health, share) = &rows[&target];
            health != "up" && *share == 0 && others.iter().all(|o| rows[o].1 >= 40)
        },
    )
    .await;
    let live = browser
        .client
        .execute(
            "return document.getElementById('announce').getAttribute('aria-live')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(live, "polite", "status changes are announced");
    browser.screenshot("ops-during").await;
    let during = served_during(&client, up.admin, Duration::from_secs(2)).await;
    assert_eq!(
        during.get(&target.to_string()).copied().unwrap_or(0),
        0,
        "{during:?}"
    );
    for other in others {
        assert!(during[&other.to_string()] > 10, "{during:?}");
    }

    click(&browser, target, "start", "Started").await;
    wait_rows(&browser, &api, "the instance back with a share", |rows| {
        rows.values()
            .all(|(health, share)| health == "up" && *share > 0)
    })
    .await;
    browser.screenshot("ops-after").await;
    let after = served_during(&client, up.admin, Duration::from_secs(2)).await;
    assert!(after[&target.to_string()] > 10, "{after:?}");

    let (sent, failed) = load.finish().await;
    assert!(sent > 100, "the load ran: {sent} requests");
    // Failover retries idempotent requests on another instance: a stop costs none of them.
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    browser.close().await;
}
