//! `strata up` and product images: the demo catalog's pictures are generated into
//! `<data dir>/objects` at start, one per demo product, and served through the gateway by
//! every api instance with their validators.

use crate::harness::spawn_up;

#[tokio::test]
async fn up_generates_a_picture_per_demo_product_and_serves_it() {
    let up = spawn_up(&["--api", "2", "--chat", "1"]).await;
    let products = strata_store::demo_catalog().len();
    let dir = up.data_dir().join("objects/products");
    let files = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .count();
    assert_eq!(files, products, "{}", dir.display());

    let client = reqwest::Client::new();
    let mut tags = std::collections::BTreeSet::new();
    // Round robin: the two requests per product reach both instances, which agree.
    for id in [1, 1, 2, 2, products, products] {
        let response = client
            .get(up.url(&format!("/images/products/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "product {id}");
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
        assert_eq!(response.headers()["cache-control"], "public, max-age=300");
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body = response.text().await.unwrap();
        assert!(body.starts_with("<svg"), "{body}");
        tags.insert(tag);
    }
    assert_eq!(tags.len(), 3, "one tag per product: {tags:?}");
}
