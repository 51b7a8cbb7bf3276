//! Support chat in two browsers against `strata up`: a customer's widget on the shop page and an
//! agent's console at `/support`, each logged in by its session cookie. The agent sees the
//! customer's room with an unread count, joins, and the two exchange messages both ways with
//! typing shown; then the customer's network is cut for real (a TCP relay in front of the
//! gateway severs every connection and refuses new ones), the agent writes meanwhile, and once
//! the network is back the widget resumes and shows each of those messages once, in order.
//! While cut off, the widget does not claim the agent is here; when the session ends, it stops
//! reconnecting and asks to log in again. The console's list is live: a customer's message is
//! counted from the agent's chat connection, without the list being read again.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::driver::{Browser, Driver};
use crate::harness::spawn_up_with_env;

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
/// Messages the agent sends while the customer is cut off.
const WHILE_CUT: usize = 3;

/// A TCP relay in front of the gateway: the customer's browser talks to the shop through it,
/// so the test can cut the customer's network and restore it.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, state) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *state.borrow() {
                    // Cut off: the connection is closed before a byte is read.
                    drop(client);
                    continue;
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Whichever comes first: either side closes, or the network is cut, which
                    // drops both sockets (every connection severed at once).
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { addr, cut, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Severs every connection through the relay and refuses new ones.
    fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets connections through again.
    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs `browser` in at `url` (the page to end up on) with the session cookie of `token`.
async fn log_in(browser: &Browser, url: &str, token: &str) {
    browser.open(url).await;
    // Set from the page (WebDriver's add-cookie refuses an IP address as the domain); the
    // log-in page's cookie would be HttpOnly, which changes nothing for these pages.
    browser
        .client
        .execute(
            "document.cookie = `strata_session=${arguments[0]}; path=/; samesite=lax`",
            vec![json!(token)],
        )
        .await
        .unwrap();
    browser.open(url).await;
}

/// The bodies of the messages in the customer's widget, in page order.
async fn widget_bodies(browser: &Browser) -> Vec<String> {
    let bodies = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.chat-log li .body')].map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(bodies).unwrap()
}

/// How many times the console's page has read the agents' room list so far.
async fn rooms_reads(browser: &Browser) -> usize {
    let count = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource')\
               .filter(e => e.name.includes('/api/v1/chat/rooms?')).length",
            vec![],
        )
        .await
        .unwrap();
    usize::try_from(count.as_u64().unwrap()).unwrap()
}

/// Waits until `css` matches an element of `browser`'s page (within the driver's wait).
async fn wait_css(browser: &Browser, css: &str) {
    browser.wait(Locator::Css(css)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_an_agent_chat_and_the_widget_resumes_after_a_network_cut() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "2"],
        &[
            ("STRATA_ADMIN_EMAIL", "root@example.com"),
            ("STRATA_ADMIN_PASSWORD", "root password"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let admin = up.token(&http, "root@example.com", "root password").await;
    let customer = up
        .customer(&http, "ann@example.test", "customer password")
        .await;
    let agent = up
        .customer(&http, "bob@example.test", "agent password")
        .await;
    let agent_id = up.user_id(&http, &agent).await;
    let granted = http
        .patch(up.url(&format!("/api/v1/users/{agent_id}/role")))
        .bearer_auth(&admin)
        .json(&json!({"role": "support"}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let relay = Relay::start(up.public).await;

    // The customer, on the shop page through the relay, opens the widget and writes first.
    let shop = driver.browser().await;
    log_in(&shop, &relay.url("/"), &customer).await;
    shop.wait(Locator::Css(".chat-toggle"))
        .await
        .click()
        .await
        .unwrap();
    wait_css(&shop, ".chat-status[data-state='open']").await;
    let input = shop.wait(Locator::Id("chat-input")).await;
    input
        .send_keys(&format!("Hello, my order is late{ENTER}"))
        .await
        .unwrap();
    wait_css(&shop, ".chat-log li.mine[data-id='1']").await;

    // The agent's console lists the room with one unread message and the customer online.
    let desk = driver.browser().await;
    log_in(&desk, &up.url("/support"), &agent).await;
    let row = "#rooms tr[data-room^='support-']";
    wait_css(&desk, &format!("{row} .unread")).await;
    let text = desk
        .wait_text("the customer's room, unread and online", |t| {
            t.contains("ann@example.test") && t.contains("online")
        })
        .await;
    assert!(text.contains("Hello, my order is late"), "{text}");
    let unread = desk
        .wait(Locator::Css(&format!("{row} .unread")))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(unread, "1");
    desk.screenshot("chat-console").await;

    // The list is live: the customer's next message is counted at once, from the agent's
    // chat connection, without the list being read again.
    wait_css(&desk, "#rooms-status[data-state='open']").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads_before = rooms_reads(&desk).await;
    let input = shop.wait(Locator::Id("chat-input")).await;
    input
        .send_keys(&format!("Are you there?{ENTER}"))
        .await
        .unwrap();
    desk.wait_text("the customer's second message in the list", |t| {
        t.contains("Are you there?")
    })
    .await;
    let unread = desk
        .wait(Locator::Css(&format!("{row} .unread")))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(unread, "2");
    assert_eq!(
        rooms_reads(&desk).await,
        reads_before,
        "the room list was read again rather than updated live"
    );

    // The agent joins; the customer learns an agent is here.
    desk.wait(Locator::Css(&format!("{row} button")))
        .await
        .click()
        .await
        .unwrap();
    desk.wait_text("the customer's message in the tab", |t| {
        t.contains("Answer ann@example.test")
    })
    .await;
    wait_css(&desk, "[role='tabpanel']:not([hidden]) li[data-id='1']").await;
    wait_css(&shop, ".chat-presence[data-agent='here']").await;
    // Viewing the room marks it read.
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let unread = desk
                .client
                .execute(
                    "const u = document.querySelector(\"#rooms tr[data-room^='support-'] .unread\"); return u ? u.textContent : '0'",
                    vec![],
                )
                .await
                .unwrap();
            if unread == json!("0") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the room stays unread after the agent viewed it"
    );

    // Both ways, with typing shown on the other side first.
    let answer = desk
        .wait(Locator::Css("[role='tabpanel']:not([hidden]) textarea"))
        .await;
    answer.send_keys("Let me check").await.unwrap();
    shop.wait_text("the agent typing", |t| t.contains("is typing"))
        .await;
    answer.send_keys(ENTER).await.unwrap();
    shop.wait_text("the agent's answer", |t| t.contains("Let me check"))
        .await;
    // The widget sends one typing notice per 1.5 s (`TYPING_EVERY_MS`), and the last one went
    // out with "Are you there?", which a fast run may have typed less than that ago.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let input = shop.wait(Locator::Id("chat-input")).await;
    input.send_keys("Thank you").await.unwrap();
    desk.wait_text("the customer typing", |t| t.contains("is typing"))
        .await;
    input.send_keys(ENTER).await.unwrap();
    desk.wait_text("the customer's thanks", |t| t.contains("Thank you"))
        .await;
    shop.screenshot("chat-widget").await;

    // The customer's network goes down: the widget says it is reconnecting.
    relay.cut();
    wait_css(&shop, ".chat-status[data-state='reconnecting']").await;
    // Cut off, the widget cannot know whether the agent is still here, and says so.
    wait_css(&shop, ".chat-presence[data-agent='unknown']").await;
    // The console sees the customer leave at once (its list is read every 30 s only).
    let away = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let online = desk
                .client
                .execute(
                    "const c = document.querySelector(\"#rooms tr[data-room^='support-'] td:nth-child(2)\"); return c ? c.textContent : ''",
                    vec![],
                )
                .await
                .unwrap();
            if online == json!("away") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        away.is_ok(),
        "the console still shows the cut customer online"
    );
    shop.screenshot("chat-reconnecting").await;
    for i in 1..=WHILE_CUT {
        answer
            .send_keys(&format!("While you were away {i}{ENTER}"))
            .await
            .unwrap();
        desk.wait_text("the agent's message shown", |t| {
            t.contains(&format!("While you were away {i}"))
        })
        .await;
    }
    // Long enough for the widget to have failed to reconnect at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = widget_bodies(&shop).await;
    assert!(
        !during.iter().any(|b| b.starts_with("While you were away")),
        "the cut customer saw {during:?}"
    );
    relay.restore();

    // Back: every message sent meanwhile, exactly once, in order, and the agent present.
    wait_css(&shop, ".chat-status[data-state='open']").await;
    wait_css(&shop, ".chat-presence[data-agent='here']").await;
    let last = format!("While you were away {WHILE_CUT}");
    shop.wait_text("the messages sent while cut", |t| t.contains(&last))
        .await;
    let bodies = widget_bodies(&shop).await;
    let missed: Vec<&String> = bodies
        .iter()
        .filter(|b| b.starts_with("While you were away"))
        .collect();
    let expected: Vec<String> = (1..=WHILE_CUT)
        .map(|i| format!("While you were away {i}"))
        .collect();
    assert_eq!(missed, expected.iter().collect::<Vec<_>>(), "{bodies:?}");
    assert_eq!(
        bodies,
        [
            "Hello, my order is late",
            "Are you there?",
            "Let me check",
            "Thank you",
            "While you were away 1",
            "While you were away 2",
            "While you were away 3",
        ],
        "the whole conversation, once each"
    );

    // A page change resumes too: the conversation is there, and nothing twice.
    shop.open(&relay.url("/")).await;
    wait_css(&shop, ".chat-status[data-state='open']").await;
    shop.wait_text("the conversation after a page change", |t| {
        t.contains(&last)
    })
    .await;
    let again = widget_bodies(&shop).await;
    assert_eq!(again, bodies, "after a page change");

    // The session ends (here: a cookie chat refuses) while the network is down: once back,
    // the widget stops trying and asks to log in again, rather than retrying for ever.
    shop.client
        .execute(
            "document.cookie = 'strata_session=not-a-session; path=/; samesite=lax'",
            vec![],
        )
        .await
        .unwrap();
    relay.cut();
    wait_css(&shop, ".chat-status[data-state='reconnecting']").await;
    relay.restore();
    wait_css(
        &shop,
        ".chat-status[data-state='unauthorized'] a[href^='/login?next=']",
    )
    .await;
    assert_eq!(
        shop.wait(Locator::Css(".chat-presence"))
            .await
            .attr("data-agent")
            .await
            .unwrap()
            .as_deref(),
        Some("unknown"),
        "no presence shown for a session that ended"
    );
    shop.screenshot("chat-session-ended").await;

    shop.close().await;
    desk.close().await;
}
