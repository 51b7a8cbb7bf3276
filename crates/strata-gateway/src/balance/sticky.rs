//! Sticky sessions: a client's first request goes to the least loaded instance and the proxy
//! answers with a cookie naming that instance; later requests carrying the cookie go to the
//! same instance while it is available, and to a new one (with a new cookie) when it is not.
//!
//! The cookie holds the instance's id (a stable hash of its address, in hex), not its address
//! or its position in the pool: it reveals nothing about the network, survives instances being
//! added or reordered, and means the same to every gateway in front of the pool.

use super::least_connections::LeastConnections;
use super::{Algorithm, Balancer, PickContext, Snapshot};

/// Cookie-based affinity with least connections for new clients.
#[derive(Debug)]
pub struct Sticky {
    /// The id of each instance, in pool order.
    ids: Box<[u64]>,
    fallback: LeastConnections,
}

impl Sticky {
    /// A balancer over the instances of `snapshot`.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            ids: snapshot.ids.into(),
            fallback: LeastConnections::new(snapshot),
        }
    }

    /// The instance whose id is `id`, if it is in the pool.
    fn named(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }
}

impl Balancer for Sticky {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Sticky
    }

    /// `cx.key` is the id the request's cookie names, if any.
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        cx.key
            .and_then(|id| self.named(id))
            .filter(|&i| cx.live.is_available(i))
            .or_else(|| self.fallback.pick(cx))
    }

    fn next_after(&self, failed: usize, cx: &PickContext<'_>) -> Option<usize> {
        self.fallback.next_after(failed, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Snapshot;
    use crate::balance::testing::{Fixed, ids};

    fn sticky(len: usize) -> (Sticky, Vec<u64>) {
        let ids = ids(len);
        (Sticky::new(&Snapshot::uniform(&vec![1; len], &ids)), ids)
    }

    fn pick(balancer: &Sticky, key: Option<u64>, live: &Fixed) -> Option<usize> {
        balancer.pick(&PickContext {
            len: live.down.len(),
            key,
            live,
        })
    }

    #[test]
    fn a_valid_cookie_is_honoured_whatever_the_load() {
        let (balancer, ids) = sticky(3);
        let live = Fixed::new(&[0, 0, 9]);
        for _ in 0..10 {
            assert_eq!(pick(&balancer, Some(ids[2]), &live), Some(2));
        }
    }

    #[test]
    fn without_a_cookie_the_least_loaded_instance_is_chosen() {
        let (balancer, _) = sticky(3);
        let live = Fixed::new(&[4, 1, 9]);
        assert_eq!(pick(&balancer, None, &live), Some(1));
    }

    #[test]
    fn a_cookie_naming_an_unavailable_or_unknown_instance_falls_back() {
        let (balancer, ids) = sticky(3);
        let live = Fixed::new(&[4, 1, 0]).with_down(&[2]);
        assert_eq!(pick(&balancer, Some(ids[2]), &live), Some(1));
        assert_eq!(pick(&balancer, Some(12345), &live), Some(1));
    }
}
