//! The storefront in a browser against `strata up`, as a customer shops: search with filters,
//! two products into an anonymous cart, register (the cart comes along), a coupon quoted at
//! checkout, "pay" double-clicked (and the form sent once more, as a retry would) for one
//! order, and the order page following the order to `shipped` without a reload. Every page
//! visited is photographed, an error page too.

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};

use crate::driver::{Browser, Driver, WAIT};
use crate::harness::spawn_up_with_env;

/// How long an order may take to ship: `strata up` waits about 3 s after payment
/// (`worker.fulfilment_delay_ms`); a debug build on a busy machine needs more.
const SHIPPING: Duration = Duration::from_secs(40);

/// Types `text` into the field with this id, replacing what it held.
async fn fill(browser: &Browser, id: &str, text: &str) {
    let field = browser.wait(Locator::Id(id)).await;
    field.clear().await.expect("clear a field");
    field.send_keys(text).await.expect("type into a field");
}

/// Clicks the element `css` finds and waits for the page it leads to (`what`, for the
/// message): another address, with its `<main>`.
async fn click_to(browser: &Browser, css: &str, what: &str) -> Address {
    let before = browser.client.current_url().await.expect("url");
    browser
        .wait(Locator::Css(css))
        .await
        .click()
        .await
        .expect("click");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = browser.client.current_url().await.expect("url");
        if now != before {
            browser.wait(Locator::Css("main")).await;
            return Address {
                path: now.path().to_owned(),
                query: now.query().unwrap_or_default().to_owned(),
            };
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still at {before} after clicking {css}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a click led: the new page's path and query.
struct Address {
    path: String,
    query: String,
}

/// The `href`s of the product cards of the current page.
async fn card_links(browser: &Browser) -> Vec<String> {
    let mut links = Vec::new();
    for card in browser
        .client
        .find_all(Locator::Css("ul.cards li.card > a"))
        .await
        .expect("cards")
    {
        links.push(card.attr("href").await.expect("href").expect("a link"));
    }
    links
}

#[tokio::test]
async fn a_customer_shops_checks_out_once_and_watches_the_order_ship() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    // No declined payments: this order must ship.
    let up = spawn_up_with_env(&[], &[("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0")]).await;
    let browser = driver.browser().await;

    // Home: featured products and categories.
    browser.open(&up.url("/")).await;
    browser
        .wait_text("the home page", |t| {
            t.contains("Featured") && t.contains("books")
        })
        .await;
    browser.screenshot("shop-home").await;

    // Search: words, a category, a price range and a sort, from the form.
    browser.open(&up.url("/search")).await;
    fill(&browser, "q", "pocket").await;
    browser
        .wait(Locator::Id("category"))
        .await
        .select_by_value("books")
        .await
        .expect("pick a category");
    fill(&browser, "min", "1").await;
    fill(&browser, "max", "500").await;
    browser
        .wait(Locator::Id("sort"))
        .await
        .select_by_value("price_asc")
        .await
        .expect("pick a sort");
    let found = click_to(&browser, "form.filters button[type=submit]", "the results").await;
    let query = found.query;
    for part in [
        "q=pocket",
        "category=books",
        "min=1",
        "max=500",
        "sort=price_asc",
    ] {
        assert!(query.contains(part), "{query}");
    }
    browser.screenshot("shop-search").await;
    let links = card_links(&browser).await;
    assert!(links.len() >= 2, "two pocket books at least: {links:?}");

    // Two products into the cart, as a visitor.
    let mut names = Vec::new();
    for (i, link) in links.iter().take(2).enumerate() {
        browser.open(&up.url(link)).await;
        browser.wait(Locator::Id("add")).await;
        let name = browser
            .wait(Locator::Css("main h1"))
            .await
            .text()
            .await
            .expect("name");
        if i == 0 {
            browser
                .wait_text("recommendations", |t| t.contains("Customers also bought"))
                .await;
            browser.screenshot("shop-product").await;
        }
        let cart = click_to(&browser, "#add", "the cart").await;
        assert_eq!(cart.path, "/cart");
        names.push(name);
    }
    let cart = browser
        .wait_text("both products in the cart", |t| {
            names.iter().all(|n| t.contains(n.as_str()))
        })
        .await;
    assert!(cart.contains("Checkout"), "{cart}");
    browser.screenshot("shop-cart").await;

    // Checkout needs an account: the log-in page, then registration, then back to checkout.
    let login = click_to(&browser, "#to-checkout", "the log-in page").await;
    assert_eq!(login.path, "/login");
    browser.screenshot("shop-login").await;
    let register = click_to(&browser, "main a[href^='/register']", "the register page").await;
    assert_eq!(register.path, "/register");
    let email = format!("shopper-{}@example.com", std::process::id());
    fill(&browser, "display_name", "Browser Shopper").await;
    fill(&browser, "email", &email).await;
    fill(&browser, "password", "browser password 1").await;
    browser.screenshot("shop-register").await;
    let checkout = click_to(&browser, "form.stack button[type=submit]", "checkout").await;
    assert_eq!(checkout.path, "/checkout");

    // The anonymous cart survived: both products are on the checkout page.
    browser
        .wait_text("the merged cart at checkout", |t| {
            names.iter().all(|n| t.contains(n.as_str()))
        })
        .await;

    // A coupon, quoted before paying: the discount and the tax are shown.
    fill(&browser, "coupon", "welcome10").await;
    click_to(&browser, "#apply", "the quote").await;
    let quoted = browser
        .wait_text("the quote", |t| {
            t.contains("WELCOME10 takes") && t.contains("Coupon") && t.contains("Tax")
        })
        .await;
    assert!(quoted.contains("Pay"), "{quoted}");
    browser.screenshot("shop-checkout").await;
    let key = browser
        .wait(Locator::Css("input[name=idempotency_key]"))
        .await
        .attr("value")
        .await
        .expect("key")
        .expect("a key in the form");

    // Pay, double-clicked.
    let pay = browser.wait(Locator::Id("pay")).await;
    let double_click = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: pay,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    browser
        .client
        .perform_actions(double_click)
        .await
        .expect("double-click pay");
    browser
        .wait_text("the order page", |t| {
            t.contains("Order ") && t.contains("History")
        })
        .await;
    let order_url = browser.client.current_url().await.expect("url");
    assert!(order_url.path().starts_with("/orders/"), "{order_url}");

    // The same form sent again (a retry after a lost answer) lands on the same order.
    let retried = browser
        .client
        .execute(
            "const body = new URLSearchParams({idempotency_key: arguments[0], \
             coupon: 'WELCOME10', region: 'EU-DE'}); \
             return fetch('/checkout', {method: 'POST', body, credentials: 'same-origin'}) \
             .then((r) => new URL(r.url).pathname);",
            vec![serde_json::json!(key)],
        )
        .await
        .expect("post the form again");
    assert_eq!(retried.as_str(), Some(order_url.path()), "{retried}");
    browser.screenshot("shop-order").await;

    // The status moves on in place: a marker set on this document survives, so no reload.
    browser
        .client
        .execute("window.stillThisPage = true; return true;", vec![])
        .await
        .expect("mark the page");
    let deadline = tokio::time::Instant::now() + SHIPPING;
    loop {
        let status = browser
            .wait(Locator::Id("order-status"))
            .await
            .text()
            .await
            .expect("status");
        if status == "shipped" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order is still {status:?} after {SHIPPING:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let same_page = browser
        .client
        .execute("return window.stillThisPage === true;", vec![])
        .await
        .expect("read the marker");
    assert_eq!(same_page, serde_json::json!(true), "the page was reloaded");
    let history = browser
        .wait_text("the history", |t| {
            t.contains("paid") && t.contains("shipped")
        })
        .await;
    assert!(history.contains("placed"), "{history}");
    browser.screenshot("shop-order-shipped").await;

    // One order, whatever the clicks: the order history lists exactly one.
    browser.open(&up.url("/orders")).await;
    let rows = browser
        .client
        .find_all(Locator::Css("#orders tbody tr"))
        .await
        .expect("order rows");
    assert_eq!(rows.len(), 1, "one order");
    browser.screenshot("shop-orders").await;

    // Notifications: one per status the order entered, each naming the order once.
    browser.open(&up.url("/notifications")).await;
    let text = browser
        .wait_text("the shipping notification", |t| t.contains("on its way"))
        .await;
    for said in [
        "We received your order",
        "Your payment was accepted",
        "Your order is on its way",
    ] {
        assert_eq!(text.matches(said).count(), 1, "{said:?} once in:\n{text}");
    }
    assert!(!text.contains("Order 1: Order 1:"), "{text}");
    browser.screenshot("shop-notifications").await;

    // A product that does not exist: a friendly 404 page.
    browser.open(&up.url("/products/999999")).await;
    browser
        .wait_text("the error page", |t| t.contains("Not found"))
        .await;
    browser.screenshot("shop-error").await;

    browser.close().await;
}
