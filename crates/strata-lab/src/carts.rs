//! The carts scenario: anonymous carts, each made with one line before the clock starts, then
//! reads and updates of those carts in turn, each on a cart chosen by a hash of the request
//! number. The lab's stateful-vs-stateless rows measure carts this way, in either cart mode.
//!
//! A cart is named by its cookies (`strata_cart`, and whatever else the api sets, such as the
//! owner cookie the gateway hashes on in local mode), sent back as one `Cookie` header. Cart
//! `i` holds product `1 + i % 10` (the demo catalog has more), and an update sets that line's
//! quantity (1 to 9), so a cart never loses its line: a cart read back empty was lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::conn::{Conn, Wire, serialize};
use crate::shop::{SetupClient, SetupLog};
use crate::workload::{Call, Workload, mix64};
use crate::{Failure, LabError};

/// Carts made at once during the setup.
const SETUP_PARALLELISM: usize = 16;
/// Products the carts' lines are spread over.
const PRODUCTS: usize = 10;

/// The product of cart `i`'s line.
pub(crate) fn cart_product(i: usize) -> i64 {
    i64::try_from(i % PRODUCTS).unwrap_or(0) + 1
}

/// The `Cookie` header value of a response's `Set-Cookie` values: each `name=value`, without
/// attributes, without cookies being cleared (empty value).
fn cookie_header(set_cookies: &[bytes::Bytes]) -> String {
    set_cookies
        .iter()
        .filter_map(|c| {
            let text = std::str::from_utf8(c).ok()?;
            let pair = text.split(';').next()?.trim();
            let (name, value) = pair.split_once('=')?;
            (!name.is_empty() && !value.is_empty()).then(|| pair.to_owned())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Makes `n` anonymous carts through `addr` (one line each) and returns their `Cookie`
/// header values, cart `i` at index `i`.
///
/// # Errors
/// [`LabError::Setup`] (`cart`) when a cart cannot be made or its answer sets no cookie.
pub(crate) async fn make_carts(
    addr: SocketAddr,
    host: &str,
    n: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<(Vec<String>, SetupLog), LabError> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = Arc::new(SetupClient {
        addr,
        host: host.to_owned(),
        connect_timeout,
        request_timeout,
        log: Arc::clone(&log),
    });
    let mut cookies = vec![String::new(); n];
    let mut tasks = JoinSet::new();
    let mut next = 0;
    while next < n || !tasks.is_empty() {
        while next < n && tasks.len() < SETUP_PARALLELISM {
            let client = Arc::clone(&client);
            let i = next;
            tasks.spawn(async move {
                let answer = client
                    .exchange(
                        "cart",
                        "POST",
                        "/api/v1/cart/items",
                        &[("content-type", "application/json")],
                        Some(json!({"product_id": cart_product(i), "quantity": 1})),
                    )
                    .await?;
                let cookie = cookie_header(&answer.cookies);
                if cookie.is_empty() {
                    return Err(LabError::setup("cart", "a new cart came without a cookie"));
                }
                Ok::<_, LabError>((i, cookie))
            });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            let (i, cookie) = joined??;
            cookies[i] = cookie;
        }
    }
    let log = std::mem::take(&mut *log.lock().await);
    Ok((cookies, log))
}

/// How many lines the cart of `cookie` shows through `addr`: `None` when it is not served
/// (no answer, or not 2xx, or not a cart).
pub(crate) async fn cart_lines(
    addr: SocketAddr,
    host: &str,
    cookie: &str,
    timeout: Duration,
) -> Option<usize> {
    let wire = serialize("GET", "/api/v1/cart", host, &[("cookie", cookie)], None);
    let answer = tokio::time::timeout(timeout, async {
        let mut conn = Conn::open(addr, timeout).await?;
        conn.exchange(&wire, "x-strata-instance", true).await
    })
    .await
    .unwrap_or(Err(Failure::Timeout))
    .ok()?;
    if !(200..300).contains(&answer.status) {
        return None;
    }
    let body: Value = serde_json::from_slice(answer.body.as_deref()?).ok()?;
    body["items"].as_array().map(Vec::len)
}

/// Reads and updates of the carts of `cookies`, in turn.
pub(crate) struct Carts {
    host: String,
    operations: Vec<String>,
    cookies: Vec<String>,
    reads: Vec<Wire>,
}

impl Carts {
    pub(crate) fn new(host: &str, cookies: Vec<String>) -> Carts {
        let reads = cookies
            .iter()
            .map(|c| serialize("GET", "/api/v1/cart", host, &[("cookie", c)], None))
            .collect();
        Carts {
            host: host.to_owned(),
            operations: vec!["read".to_owned(), "update".to_owned()],
            cookies,
            reads,
        }
    }
}

impl Workload for Carts {
    fn operations(&self) -> &[String] {
        &self.operations
    }

    fn call(&self, ticket: u64) -> Call {
        let n = self.cookies.len().max(1) as u64;
        let cart = usize::try_from(mix64(ticket / 2) % n).unwrap_or(0);
        if ticket.is_multiple_of(2) {
            return Call {
                op: 0,
                wire: self.reads[cart].clone(),
                user: cart,
                tag: 0,
            };
        }
        let body = json!({"quantity": 1 + (ticket / 2) % 9}).to_string();
        let wire = serialize(
            "PATCH",
            &format!("/api/v1/cart/items/{}", cart_product(cart)),
            &self.host,
            &[
                ("cookie", &self.cookies[cart]),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
        Call {
            op: 1,
            wire,
            user: cart,
            tag: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_keep_name_and_value_and_skip_cleared_ones() {
        let set = [
            bytes::Bytes::from_static(b"strata_cart=abc; Path=/; HttpOnly"),
            bytes::Bytes::from_static(b"strata_cart_owner=a1; Path=/"),
            bytes::Bytes::from_static(b"gone=; Max-Age=0"),
        ];
        assert_eq!(cookie_header(&set), "strata_cart=abc; strata_cart_owner=a1");
    }

    #[test]
    fn reads_and_updates_alternate_on_the_carts_own_line() {
        let carts = Carts::new("h:1", vec!["c=0".into(), "c=1".into(), "c=2".into()]);
        let read = carts.call(4);
        assert_eq!(read.op, 0);
        let text = String::from_utf8_lossy(&read.wire.bytes).into_owned();
        assert!(text.starts_with("GET /api/v1/cart HTTP/1.1"), "{text}");
        assert!(text.contains(&format!("cookie: c={}", read.user)), "{text}");
        let update = carts.call(5);
        assert_eq!((update.op, update.user), (1, read.user));
        let text = String::from_utf8_lossy(&update.wire.bytes).into_owned();
        assert!(
            text.starts_with(&format!(
                "PATCH /api/v1/cart/items/{} HTTP/1.1",
                cart_product(update.user)
            )),
            "{text}"
        );
        assert!(text.ends_with(r#"{"quantity":3}"#), "{text}");
    }
}
