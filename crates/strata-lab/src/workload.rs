//! What each request of a run is: a [`Workload`] turns a request number into a serialized
//! request and the operation it counts under, and learns from the answer (a shop customer's
//! cart fills and empties). [`Endpoint`] is one endpoint, or several paths in turn.

use crate::conn::{Wire, serialize};

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Index into [`Workload::operations`].
    pub(crate) op: usize,
    pub(crate) wire: Wire,
    /// Whose request (the shop's customer), for [`Workload::answered`].
    pub(crate) user: usize,
    /// The workload's own note on the request, handed back to [`Workload::answered`] (the
    /// shop: which of the customer's checkouts an add to cart was sent after).
    pub(crate) tag: u64,
}

/// A source of requests, shared by every connection of a run.
pub(crate) trait Workload: Send + Sync + 'static {
    /// Operation names, in report order.
    fn operations(&self) -> &[String];
    /// The request numbered `ticket` (0, 1, 2… in send order).
    fn call(&self, ticket: u64) -> Call;
    /// The request is done: `Some` status when an answer came, `None` when it failed (no
    /// answer, or a broken one).
    fn answered(&self, _call: &Call, _status: Option<u16>) {}
}

/// One endpoint, or several paths requested in turn (`n % paths`), with one method and no
/// body.
pub(crate) struct Endpoint {
    operations: Vec<String>,
    wires: Vec<Wire>,
}

impl Endpoint {
    pub(crate) fn new(method: &str, host: &str, paths: &[String]) -> Endpoint {
        Endpoint {
            operations: paths.iter().map(|p| format!("{method} {p}")).collect(),
            wires: paths
                .iter()
                .map(|p| serialize(method, p, host, &[], None))
                .collect(),
        }
    }
}

impl Workload for Endpoint {
    fn operations(&self) -> &[String] {
        &self.operations
    }

    fn call(&self, ticket: u64) -> Call {
        let op = usize::try_from(ticket % self.wires.len() as u64).unwrap_or(0);
        Call {
            op,
            wire: self.wires[op].clone(),
            user: 0,
            tag: 0,
        }
    }
}

/// A well-mixed 64-bit hash of `x` (splitmix64's finaliser): the shop's choices of customer
/// and product, deterministic per request number.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A short id unique to this run (the time and the process id, hashed): 12 lowercase hex
/// digits, fit for emails, idempotency keys and room names.
pub(crate) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[allow(clippy::cast_possible_truncation)] // only the low bits are wanted
    let x = mix64(nanos as u64 ^ (u64::from(std::process::id()) << 40));
    format!("{:012x}", x & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_requested_in_turn() {
        let endpoint = Endpoint::new("GET", "h:1", &["/a".to_owned(), "/b?x=1".to_owned()]);
        assert_eq!(endpoint.operations(), ["GET /a", "GET /b?x=1"]);
        let ops: Vec<_> = (0..4).map(|n| endpoint.call(n).op).collect();
        assert_eq!(ops, [0, 1, 0, 1]);
        assert!(
            endpoint
                .call(1)
                .wire
                .bytes
                .starts_with(b"GET /b?x=1 HTTP/1.1\r\n")
        );
    }
}
