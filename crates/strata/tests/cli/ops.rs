//! `strata up`'s operations view: the page on the admin listener, and stopping and starting an
//! instance for real from the admin API (its port closes, then opens again).

use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::{gateway_requests_by_instance, spawn_up};

/// Whether something accepts connections at `addr`.
async fn listening(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

/// The health of the api instance at `addr` as `/admin/pools` lists it.
async fn health(client: &reqwest::Client, admin: std::net::SocketAddr, addr: &str) -> String {
    let pools: Value = client
        .get(format!("http://{admin}/admin/pools"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "api")
        .flat_map(|p| p["instances"].as_array().unwrap().iter())
        .find(|i| i["address"] == addr)
        .map(|i| i["health"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test]
async fn stop_closes_the_instance_port_and_start_opens_it_again() {
    let up = spawn_up(&["--api", "2", "--chat", "1"]).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("http://{}/ops", up.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        up.process
            .stdout()
            .contains(&format!("http://{}/ops", up.admin))
    );

    let target = up.instances("api")[0].addr;
    let other = up.instances("api")[1].addr;
    assert!(listening(target).await);
    let post = |action: &str| {
        let url = format!(
            "http://{}/admin/pools/api/instances/{target}/{action}",
            up.admin
        );
        let client = client.clone();
        async move {
            let response = client.post(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = post("stop").await;
    assert_eq!(status, 202, "{body}");
    assert!(
        !listening(target).await,
        "the stopped instance's port is closed"
    );
    assert!(listening(other).await);
    let (status, body) = post("stop").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    // The gateway fails over: every request is answered, by the other instance.
    let before = gateway_requests_by_instance(&client, up.admin).await;
    for _ in 0..20 {
        let response = client
            .get(up.url("/api/v1/products?per_page=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&client, up.admin, &target.to_string()).await == "up" {
        assert!(
            Instant::now() < deadline,
            "the stopped instance never went down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = gateway_requests_by_instance(&client, up.admin).await;
    let served = |counts: &std::collections::BTreeMap<String, u64>, addr: &str| {
        counts.get(addr).copied().unwrap_or(0)
    };
    assert_eq!(
        served(&after, &target.to_string()),
        served(&before, &target.to_string())
    );
    assert!(served(&after, &other.to_string()) >= served(&before, &other.to_string()) + 20);

    let (status, body) = post("start").await;
    assert_eq!(status, 202, "{body}");
    assert!(
        listening(target).await,
        "the started instance listens again"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&client, up.admin, &target.to_string()).await != "up" {
        assert!(
            Instant::now() < deadline,
            "the started instance never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let direct = client
        .get(format!("http://{target}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
}
