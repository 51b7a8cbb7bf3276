//! One chromedriver per test, one headless Chromium session per [`Browser`] (each its own
//! profile, so two sessions are two strangers: a customer and an agent), and the helpers every
//! browser test needs: waiting for an element, photographing a page at both widths.
//!
//! Without chromedriver and Chromium the tests fail under CI (`CI=true`) and are skipped with a
//! loud message elsewhere; `scripts/browser.sh` installs both from Debian's packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::time::Instant;

use crate::harness::{Process, free_port};

/// The desktop width every page is photographed at, and the mobile one.
pub const WIDTHS: [(u32, &str); 2] = [(1280, "desktop"), (390, "mobile")];
/// How long an element may take to appear (a debug build behind a loaded machine).
pub const WAIT: Duration = Duration::from_secs(15);

/// Where Debian puts the two executables (`CHROMEDRIVER` and `CHROMIUM` override them).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

fn executable(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.is_file().then_some(path)
}

/// A running chromedriver, killed on drop with every browser it started.
pub struct Driver {
    _process: Process,
    url: String,
    chromium: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port; `None` (after a loud message) when chromedriver or
    /// Chromium is missing and `CI` is not `true`.
    ///
    /// # Panics
    /// When either is missing and `CI=true`, or chromedriver does not answer within [`WAIT`].
    pub async fn start() -> Option<Driver> {
        let (Some(driver), Some(chromium)) = (
            executable("CHROMEDRIVER", CHROMEDRIVER),
            executable("CHROMIUM", CHROMIUM),
        ) else {
            let in_ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
            assert!(
                !in_ci,
                "chromedriver or chromium is not installed and CI=true: run scripts/browser.sh"
            );
            eprintln!(
                "\n!!!! SKIPPED: chromedriver or chromium is not installed (run \
                 scripts/browser.sh; CI=true fails instead) !!!!\n"
            );
            return None;
        };
        let port = free_port();
        let mut command = Command::new(driver);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let process = Process::spawn(command);
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Driver {
            _process: process,
            url,
            chromium,
        })
    }

    /// A new headless browser of its own (own profile, own cookies), at the desktop width.
    pub async fn browser(&self) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": self.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a chromium session");
        Browser { client }
    }
}

/// One browser session.
pub struct Browser {
    pub client: Client,
}

impl Browser {
    /// Opens `url` and waits for its `<main>` (every strata page has one).
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        self.wait(Locator::Css("main")).await;
    }

    /// The first element `locator` finds, waiting up to [`WAIT`] for it to appear.
    pub async fn wait(&self, locator: Locator<'_>) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(locator)
            .await
            .unwrap_or_else(|e| panic!("no element {locator:?} within {WAIT:?}: {e}"))
    }

    /// Waits until `condition` holds of the page's text (`document.body.innerText`), within
    /// [`WAIT`]; the text last seen is in the panic.
    pub async fn wait_text(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self
                .client
                .execute("return document.body.innerText", vec![])
                .await
                .expect("read the page")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if condition(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {WAIT:?}; the page says:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Photographs the current page as `<name>-desktop.png` and `<name>-mobile.png` under
    /// [`screenshot_dir`], then returns to the desktop width.
    pub async fn screenshot(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        for (width, label) in WIDTHS {
            self.client
                .set_window_size(width, 900)
                .await
                .expect("resize the window");
            // Let the layout settle at the new width before the picture.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client.screenshot().await.expect("a screenshot");
            let path = dir.join(format!("{name}-{label}.png"));
            std::fs::write(&path, png).expect("write the screenshot");
        }
        self.client
            .set_window_size(WIDTHS[0].0, 900)
            .await
            .expect("resize the window");
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where the screenshots go: `$STRATA_SCREENSHOTS`, else `target/screenshots` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("STRATA_SCREENSHOTS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/screenshots")
                .to_path_buf()
        },
        PathBuf::from,
    )
}
