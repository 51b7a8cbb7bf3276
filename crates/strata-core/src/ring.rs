//! The hash ring that places a key on one of a set of instances, and the stable hash it is
//! built from. One implementation for every role that must agree on a key's owner: the
//! gateway's `consistent_hash` balancer walks it to pick an instance, and the api's local
//! carts walk the same ring to know which instance holds a cart, so both name the same owner.
//!
//! # The hash
//! FNV-1a followed by MurmurHash3's 64-bit finaliser. Stable means the same on every process
//! and every run: two gateways in front of the same instances must send a key to the same
//! instance, and an api instance must find the owner the gateway picked. std's `RandomState`
//! is seeded per process and cannot serve. FNV-1a alone mixes short, similar inputs
//! (`10.0.0.1:8101-0`, `-1`, …) poorly in its high bits, which would cluster points on the
//! ring; the finaliser spreads every input bit over the whole word.
//!
//! # The ring
//! Like ketama, each instance owns points on a 64-bit ring: 160 per unit of weight (fewer per
//! unit only when the total weight passes 1024, to bound the ring at ~160 000 points). Point
//! `j` of an instance is the stable hash of its id and `j`, so an instance's points do not
//! depend on which other instances exist: adding one only takes over the arcs before its own
//! points (about 1/n of the keys), removing one only hands its arcs to the next points. A key
//! goes to the owner of the first point at or after the key's hash; [`Ring::walk`] lists the
//! instances in the order a key meets them, which is where the key goes when the ones before
//! are left out (down, draining, removed).

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Ring points per unit of weight.
pub const POINTS_PER_WEIGHT: u64 = 160;
/// Most points on a ring: 160 per unit for up to 1024 units of weight.
const MAX_POINTS: u64 = POINTS_PER_WEIGHT * 1024;

/// The stable hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

/// The stable id of the instance at `address` (`host:port`): its points on the ring.
pub fn instance_id(address: &str) -> u64 {
    hash_bytes(address.as_bytes())
}

/// FNV-1a over `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's `fmix64`: a bijection on `u64` in which every input bit affects every output
/// bit.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A hash ring over instances given as `(id, weight)`, in the caller's order: walks yield
/// indices into that order.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// `(point, instance)`, sorted by point.
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// The ring of `instances` (`(id, weight)`), each with points in proportion to its weight.
    pub fn new(instances: &[(u64, u32)]) -> Self {
        let total: u64 = instances.iter().map(|&(_, w)| u64::from(w)).sum();
        let per_unit = MAX_POINTS
            .checked_div(total)
            .map_or(0, |p| p.clamp(1, POINTS_PER_WEIGHT));
        let mut points: Vec<(u64, u32)> = Vec::new();
        for (i, &(id, weight)) in instances.iter().enumerate() {
            let instance = u32::try_from(i).unwrap_or(u32::MAX);
            for j in 0..u64::from(weight) * per_unit {
                points.push((point(id, j), instance));
            }
        }
        points.sort_unstable();
        Self {
            points: points.into_boxed_slice(),
        }
    }

    /// Whether the ring has no point (no instance, or weights all 0).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Where `key` lands: the index of the first point at or after it.
    fn start(&self, key: u64) -> usize {
        let at = self.points.partition_point(|&(p, _)| p < key);
        if at == self.points.len() { 0 } else { at }
    }

    /// The instances in the order a key's walk meets them, each once.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.start(key);
        let n = self.points.len();
        let mut seen = Seen::default();
        (0..n)
            .map(move |k| self.points[(start + k) % n].1 as usize)
            .filter(move |&i| seen.first_time(i))
    }

    /// The owner of `key`: the first instance of its walk; `None` on an empty ring.
    pub fn owner(&self, key: u64) -> Option<usize> {
        self.points.get(self.start(key)).map(|&(_, i)| i as usize)
    }
}

/// The position of point `j` of the instance with id `id`.
fn point(id: u64, j: u64) -> u64 {
    mix(id ^ mix(j.wrapping_add(1)))
}

/// Instances met so far on a walk: a bitset on the stack for up to 1024 instances; beyond
/// that every meeting counts as the first (the walk is then merely longer).
#[derive(Default)]
struct Seen {
    bits: [u64; 16],
}

impl Seen {
    fn first_time(&mut self, i: usize) -> bool {
        match self.bits.get_mut(i / 64) {
            Some(word) => {
                let bit = 1u64 << (i % 64);
                let first = *word & bit == 0;
                *word |= bit;
                first
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_fixed_across_runs_and_builds() {
        // Pinned values: changing the hash moves every key and breaks every sticky cookie.
        assert_eq!(hash_bytes(b"room-1"), mix(fnv1a(b"room-1")));
        assert_eq!(mix(0), 0);
        assert_eq!(instance_id("127.0.0.1:8201"), hash_bytes(b"127.0.0.1:8201"));
        assert_ne!(instance_id("127.0.0.1:8201"), instance_id("127.0.0.1:8202"));
    }

    #[test]
    fn similar_inputs_spread_over_the_high_bits() {
        // Points of one instance differ only in a suffix; their top byte must still spread.
        let mut buckets = [0u32; 16];
        for i in 0..1600 {
            let h = hash_bytes(format!("10.0.0.1:8101-{i}").as_bytes());
            buckets[(h >> 60) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (60..=140).contains(&n)),
            "{buckets:?}"
        );
    }

    fn ring_of(addresses: &[&str]) -> Ring {
        let members: Vec<(u64, u32)> = addresses.iter().map(|a| (instance_id(a), 1)).collect();
        Ring::new(&members)
    }

    #[test]
    fn the_owner_is_the_first_of_the_walk_and_every_instance_is_walked_once() {
        let ring = ring_of(&["a:1", "b:1", "c:1"]);
        for k in 0..500u64 {
            let key = mix(k);
            let walk: Vec<usize> = ring.walk(key).collect();
            assert_eq!(walk.len(), 3);
            assert_eq!(ring.owner(key), walk.first().copied());
        }
        assert_eq!(Ring::new(&[]).owner(7), None);
    }

    #[test]
    fn leaving_an_instance_out_sends_its_keys_where_the_walk_goes_next() {
        // What the gateway does for an instance that is down or draining (skip it on the
        // walk) and what a ring without it computes are the same owner.
        let all = ["a:1", "b:1", "c:1", "d:1"];
        let ring = ring_of(&all);
        let without_c = ring_of(&["a:1", "b:1", "d:1"]);
        for k in 0..2000u64 {
            let key = hash_bytes(format!("u{k}").as_bytes());
            let skipped = ring.walk(key).find(|&i| i != 2).map(|i| all[i]);
            let rebuilt = without_c.owner(key).map(|i| ["a:1", "b:1", "d:1"][i]);
            assert_eq!(skipped, rebuilt, "key u{k}");
        }
    }
}
