//! Browser tests: Debian's Chromium, headless, driven through chromedriver (WebDriver, with
//! `fantoccini`) against a real `strata up`. Every page a test visits is photographed at a
//! desktop and a mobile width into one directory ([`driver::screenshot_dir`]).

// Helpers outside `#[test]` functions panic on a broken test machine, as the tests do.
#![allow(clippy::unwrap_used)]

mod chat;
mod driver;
// The cli tests' harness: spawning `strata up` and talking to it. Not every helper is used here.
#[allow(dead_code)]
#[path = "../cli/harness.rs"]
mod harness;
mod ops;
mod shop;
mod smoke;
