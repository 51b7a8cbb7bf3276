//! SIGTERM under load: `strata up` drains and exits 0 within 5 s, and no request that had been
//! sent fails; a chat client connected through the gateway is told to reconnect.

use std::time::Duration;

use strata_lab::{Failure, LoadSpec, run_until};
use tokio_util::sync::CancellationToken;

use crate::harness::spawn_up;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_in_flight_requests_and_exits_zero() {
    let mut up = spawn_up(&["--api", "2", "--chat", "1"]).await;
    let stop = CancellationToken::new();
    let mut spec = LoadSpec::new(up.url("/api/v1/products?per_page=5"));
    spec.concurrency = 8;
    spec.duration = Duration::from_secs(20);
    spec.connect_timeout = Duration::from_secs(1);
    spec.request_timeout = Duration::from_secs(5);
    let load = tokio::spawn({
        let stop = stop.clone();
        async move { run_until(&spec, stop).await }
    });

    tokio::time::sleep(Duration::from_millis(800)).await;
    up.process.terminate();
    let status = up.process.wait_exit(Duration::from_secs(5)).await;
    // The process is gone (or the test fails below): stop the load, which by now only counts
    // refused connections.
    stop.cancel();
    let report = load.await.unwrap().unwrap();
    let status = status
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM\n{}", up.process.stderr()));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        up.process.stderr()
    );
    assert!(report.ok > 100, "the load hardly ran: {report:#?}");

    // How a request that was in flight is told apart from one that never was: the load
    // generator counts a failure as *sent* only when hyper had serialized the request onto an
    // open connection (hyper hands back, via `TrySendError::take_message`, any request it did
    // not write). Requests refused at connect (the listener is closed) or given back unwritten
    // (the keep-alive connection had already been closed by the draining gateway) never reached
    // the server and may fail; every request that was written must have got its response.
    let unsent = report.failures(Failure::Connect)
        + report.failures(Failure::ConnectTimeout)
        + report.failures(Failure::NotSent);
    assert_eq!(report.failed, report.sent_failures + unsent);
    // A `closed` failure here has so far always meant: the request was written on a
    // keep-alive connection that the draining gateway judged idle (its next request was still
    // unread in the socket) and closed. hyper's graceful shutdown closes idle connections at
    // once; a drain that answers with `Connection: close` for a short grace period first does
    // not lose them.
    assert_eq!(
        report.sent_failures, 0,
        "requests written on a connection got no response during the drain: {:?}\n{report:#?}",
        report.errors
    );
    assert!(
        !report.statuses.keys().any(|s| *s >= 500),
        "{:?}",
        report.statuses
    );
}

/// SIGTERM with a chat client connected through the gateway: the client gets the chat
/// instance's "reconnect" close (4012), which the draining gateway carries, and `strata up`
/// still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_chat_clients_reconnect_through_the_gateway() {
    use serde_json::{Value, json};
    use strata_chat::client::{ChatClient, Event, ws_url};
    use strata_chat::protocol::{ServerFrame, close};

    let mut up = spawn_up(&["--api", "1", "--chat", "2"]).await;
    let client = reqwest::Client::new();
    let account = json!({"email": "chat@example.com", "password": "correct horse battery",
        "display_name": "C"});
    let registered = client
        .post(up.url("/api/v1/users"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let session: Value = client
        .post(up.url("/api/v1/sessions"))
        .json(&json!({"email": account["email"], "password": account["password"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    let mut chat = ChatClient::connect(&ws_url(&up.url(""), Some(token), None, None))
        .await
        .unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(5), chat.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ready, Event::Frame(ServerFrame::Ready { .. })),
        "{ready:?}"
    );

    up.process.terminate();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::Closed(code) = chat.next().await.unwrap() {
                return code;
            }
        }
    })
    .await
    .expect("closed within 5 s of SIGTERM");
    assert_eq!(closed, Some(close::RECONNECT), "{}", up.process.stderr());
    let status = up
        .process
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM\n{}", up.process.stderr()));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        up.process.stderr()
    );
}
