//! `strata backup` and `strata restore`: a backup taken while `strata up` serves, a restore
//! refused while it runs, and, once it is stopped and has written more, a restore that brings
//! back exactly the users, orders, stock and product images of the backup's moment. The images
//! of an S3 bucket are left out, and the output says so.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use crate::harness::{TempDir, Up, run_to_exit, spawn_up_in, strata};

/// The products the test buys, and how many of each per order.
const BASKET: [(i64, i64); 2] = [(3, 2), (5, 1)];

async fn register(client: &Client, up: &Up, email: &str) {
    let response = client
        .post(up.url("/api/v1/users"))
        .json(&json!({"email": email, "password": "correct horse battery", "display_name": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "register {email}");
}

/// Logs in; `None` when the account does not exist (401).
async fn log_in(client: &Client, up: &Up, email: &str) -> Option<String> {
    let response = client
        .post(up.url("/api/v1/sessions"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    if response.status() == 401 {
        return None;
    }
    assert_eq!(response.status(), 200, "log in {email}");
    let session: Value = response.json().await.unwrap();
    Some(session["token"].as_str().unwrap().to_owned())
}

/// Fills the cart with [`BASKET`] and checks out; returns the order id.
async fn place_order(client: &Client, up: &Up, token: &str, key: &str) -> i64 {
    for (product_id, quantity) in BASKET {
        let added = client
            .post(up.url("/api/v1/cart/items"))
            .bearer_auth(token)
            .json(&json!({"product_id": product_id, "quantity": quantity}))
            .send()
            .await
            .unwrap();
        assert!(added.status().is_success(), "{}", added.status());
    }
    let placed = client
        .post(up.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().await.unwrap();
    placed["id"].as_i64().unwrap()
}

async fn get_json(client: &Client, url: String, token: Option<&str>) -> Value {
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// The caller's orders, once every one of them has reached its final status (the worker pays
/// and ships them in the background).
async fn settled_orders(client: &Client, up: &Up, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get_json(client, up.url("/api/v1/orders"), Some(token)).await;
        let items = page["items"].as_array().unwrap();
        if items.iter().all(|o| o["status"] == "shipped") {
            return page;
        }
        assert!(Instant::now() < deadline, "orders not shipped: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stock of the basket's products, as the catalog shows it.
async fn stock(client: &Client, up: &Up) -> Vec<Value> {
    let mut out = Vec::new();
    for (product_id, _) in BASKET {
        let product = get_json(
            client,
            up.url(&format!("/api/v1/products/{product_id}")),
            None,
        )
        .await;
        out.push(product["stock"].clone());
    }
    out
}

/// The `ETag` product `id`'s image is served with.
async fn image_etag(client: &Client, up: &Up, id: i64) -> String {
    let response = client
        .get(up.url(&format!("/images/products/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn stop(up: &mut Up) {
    up.process.terminate();
    let status = up
        .process
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("strata up did not stop");
    assert!(status.success(), "{status}\n{}", up.process.stderr());
}

#[tokio::test]
async fn a_backup_taken_while_serving_is_restored_once_stopped() {
    let dir = TempDir::new("backup");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let file = dir.path().join("strata.backup");
    let file_arg = file.to_str().unwrap().to_owned();
    let client = Client::builder().no_proxy().build().unwrap();
    let args = ["--api", "2", "--chat", "1"];
    // Every payment goes through, so every order ends `shipped`; catalog reads are cached for
    // a second only (checkout does not invalidate them), so the stock they show catches up.
    let env = [
        ("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0"),
        ("STRATA_CACHE_TTL_SECS", "1"),
    ];

    let mut up = spawn_up_in(&data, &args, &env).await;
    register(&client, &up, "kept@example.test").await;
    let token = log_in(&client, &up, "kept@example.test").await.unwrap();
    place_order(&client, &up, &token, "kept-1").await;
    place_order(&client, &up, &token, "kept-2").await;
    let orders = settled_orders(&client, &up, &token).await;
    assert_eq!(orders["total"], 2, "{orders}");
    let stock_then = stock(&client, &up).await;
    // A product image of the local object store (the demo pictures `strata up` writes there)
    // and how it is served.
    let objects = data.join("objects");
    let image_file = objects.join("products").join("3~obj");
    let image_then = std::fs::read(&image_file).expect("the demo image of product 3");
    let etag_then = image_etag(&client, &up, 3).await;

    // The backup, while the stack serves.
    let (status, stdout, stderr) =
        run_to_exit(strata(&["backup", "--data-dir", &data_arg, &file_arg])).await;
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("wrote {file_arg}: ")),
        "{stdout}"
    );
    assert!(stdout.contains("users 1, "), "{stdout}");
    assert!(stdout.contains("orders 2"), "{stdout}");
    assert!(
        stdout.contains(&format!(" files of {}", objects.display())),
        "{stdout}"
    );
    assert!(std::fs::metadata(&file).unwrap().len() > 0);

    // With the images in an S3 bucket, the backup leaves them to it and says so.
    let s3_file = dir.path().join("s3.backup");
    let mut command = strata(&["backup", "--data-dir", &data_arg, s3_file.to_str().unwrap()]);
    command
        .env("STRATA_OBJECTS_URL", "s3://shop-images")
        .env("STRATA_OBJECTS_ENDPOINT", "http://127.0.0.1:1")
        .env("STRATA_OBJECTS_ACCESS_KEY_ID", "backup-test")
        .env("STRATA_OBJECTS_SECRET_ACCESS_KEY", "backup-test");
    let (status, stdout, stderr) = run_to_exit(command).await;
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stdout.contains("product images: not in the backup") && stdout.contains("s3://shop-images"),
        "{stdout}"
    );
    assert!(!stdout.contains(" files of "), "{stdout}");

    // An existing file is replaced only with --force (a usage error, exit code 2, without).
    let (status, _, stderr) =
        run_to_exit(strata(&["backup", "--data-dir", &data_arg, &file_arg])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");

    // No restore under a running strata.
    let (status, _, stderr) =
        run_to_exit(strata(&["restore", "--data-dir", &data_arg, &file_arg])).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by a running strata"), "{stderr}");

    // Life goes on after the backup: a new customer, another order.
    register(&client, &up, "later@example.test").await;
    let later = log_in(&client, &up, "later@example.test").await.unwrap();
    place_order(&client, &up, &later, "later-1").await;
    place_order(&client, &up, &token, "kept-3").await;
    settled_orders(&client, &up, &token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ne!(
        stock(&client, &up).await,
        stock_then,
        "the later orders took stock"
    );
    stop(&mut up).await;
    // The images change after the backup too: one replaced, one added.
    std::fs::write(&image_file, b"not the picture of the backup").unwrap();
    let stray = objects.join("products").join("999~obj");
    std::fs::write(&stray, b"an image the backup never saw").unwrap();

    let (status, stdout, stderr) =
        run_to_exit(strata(&["restore", "--data-dir", &data_arg, &file_arg])).await;
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("restored {file_arg} to ")),
        "{stdout}"
    );
    assert!(stdout.contains("orders 2"), "{stdout}");
    assert!(
        stdout.contains(&format!(" files of {}", objects.display())),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&image_file).unwrap(), image_then);
    assert!(
        !stray.exists(),
        "an image added after the backup is still there"
    );

    // Started again, the stack serves what the backup held, and nothing written after it.
    let up = spawn_up_in(&data, &args, &env).await;
    let token = log_in(&client, &up, "kept@example.test")
        .await
        .expect("the customer of the backup logs in");
    assert_eq!(
        log_in(&client, &up, "later@example.test").await,
        None,
        "a customer registered after the backup exists"
    );
    assert_eq!(
        get_json(&client, up.url("/api/v1/orders"), Some(&token)).await,
        orders
    );
    assert_eq!(stock(&client, &up).await, stock_then);
    assert_eq!(image_etag(&client, &up, 3).await, etag_then);
    drop(up);
}

#[tokio::test]
async fn backup_refuses_a_postgres_store_and_points_to_its_tools() {
    let dir = TempDir::new("backup-pg");
    let file = dir.path().join("strata.backup");
    for command in ["backup", "restore"] {
        let (status, stdout, stderr) = run_to_exit(strata(&[
            command,
            "--database-url",
            "postgres://postgres@127.0.0.1:1/nowhere",
            file.to_str().unwrap(),
        ]))
        .await;
        assert_eq!(status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("pg_dump"), "{command}: {stderr}");
        assert!(stdout.is_empty(), "{command}: {stdout}");
    }
    assert!(!file.exists());
}
