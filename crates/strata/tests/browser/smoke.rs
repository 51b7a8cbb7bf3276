//! The browser can reach `strata up` at all: the landing page renders with the catalog in it,
//! and its photographs are taken at both widths.

use fantoccini::Locator;

use crate::driver::{Driver, screenshot_dir};
use crate::harness::spawn_up;

#[tokio::test]
async fn landing_page_renders_in_a_browser() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let up = spawn_up(&[]).await;
    let browser = driver.browser().await;
    browser.open(&up.url("/")).await;
    browser.wait(Locator::Css("main")).await;
    let text = browser
        .wait_text("a product name", |t| t.contains("€") || t.contains("$"))
        .await;
    assert!(!text.is_empty());
    browser.screenshot("smoke-home").await;
    for label in ["desktop", "mobile"] {
        let png = screenshot_dir().join(format!("smoke-home-{label}.png"));
        let bytes = std::fs::read(&png).expect("the screenshot exists");
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }
    browser.close().await;
}
