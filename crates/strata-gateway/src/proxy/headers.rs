//! Header rewriting between client and instance, done once per message: hop-by-hop headers
//! out (both ways), `X-Forwarded-For` and `X-Forwarded-Proto` in.

use http::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};

/// The client addresses the request passed through, oldest first.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used to reach the gateway.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Makes a non-idempotent request safe to repeat (the instance deduplicates by key).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Whether `name` only concerns one connection (RFC 9110 §7.6.1), plus `Proxy-*`: credentials
/// and negotiation meant for the gateway itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Standard names compare as enum tags, so this is a few integer comparisons per header.
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == PROXY_AUTHENTICATE
        || name == PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// Removes hop-by-hop headers and the headers that `Connection` names.
///
/// Most messages have none, so one scan decides; only a message that carries some pays for
/// collecting and removing them.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                doomed.push(name);
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For` (or sets it) and sets
/// `X-Forwarded-Proto: http`. `client_ip` was rendered once per connection.
pub fn add_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    let mut earlier = headers.get_all(&X_FORWARDED_FOR).iter();
    let combined = match (earlier.next(), earlier.next()) {
        (None, _) => client_ip.clone(),
        (Some(first), None) => join(&[first.as_bytes(), client_ip.as_bytes()]),
        (Some(first), Some(second)) => {
            let mut parts: Vec<&[u8]> = vec![first.as_bytes(), second.as_bytes()];
            parts.extend(earlier.map(HeaderValue::as_bytes));
            parts.push(client_ip.as_bytes());
            join(&parts)
        }
    };
    headers.insert(X_FORWARDED_FOR, combined);
    // The gateway terminates plain HTTP for now; a client's own claim is not to be believed.
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// `a, b, c` as one header value.
fn join(parts: &[&[u8]]) -> HeaderValue {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(part);
    }
    // Joining valid header values with ", " keeps them valid; fall back to the last hop only.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A fresh request id: 32 lowercase hex digits, like the UUIDs the other roles generate, but
/// made without a system call or a lock.
///
/// `strata_core::http::new_request_id` asks the kernel for 16 random bytes per id (a
/// `getrandom` call, about 4% of the gateway's time at 20k requests/s). Here the high half is
/// a per-process random seed and the low half a global counter passed through a bijective
/// mixer (SplitMix64's finaliser): ids never repeat within a process, differ between processes
/// with overwhelming probability, and do not look sequential in logs.
pub fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (high, key) = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // `RandomState` is seeded from the OS once per process; two hashers give two words.
        let state = std::collections::hash_map::RandomState::new();
        let word = |salt: u64| {
            let mut hasher = state.build_hasher();
            hasher.write_u64(salt);
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.finish()
        };
        (word(1), word(2))
    });
    let low = mix(COUNTER.fetch_add(1, Ordering::Relaxed) ^ key);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let word = if i < 16 { high } else { low };
        let shift = 60 - 4 * (i % 16);
        *byte = HEX[((word >> shift) & 0xf) as usize];
    }
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// SplitMix64's finaliser: a bijection on `u64` that scatters consecutive inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether the request may be sent twice: an idempotent method (RFC 9110 §9.2.2, as the
/// gateway's policy lists them) or an `Idempotency-Key` the instance deduplicates by.
pub fn is_repeatable(method: &http::Method, headers: &HeaderMap) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut map = headers(&[
            ("host", "shop"),
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ]);
        strip_hop_by_hop(&mut map);
        let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn end_to_end_headers_are_untouched() {
        let mut map = headers(&[("host", "a"), ("content-length", "3"), ("cookie", "x=1")]);
        strip_hop_by_hop(&mut map);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn forwarded_for_is_set_or_appended() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, &ip);
        assert_eq!(fresh[&X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(fresh[&X_FORWARDED_PROTO], "http");
        let mut one = headers(&[("x-forwarded-for", "1.1.1.1")]);
        add_forwarded(&mut one, &ip);
        assert_eq!(one[&X_FORWARDED_FOR], "1.1.1.1, 10.0.0.9");
        let mut two = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ]);
        add_forwarded(&mut two, &ip);
        assert_eq!(two.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(two[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9");
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<Vec<u8>> = (0..10_000)
            .map(|_| new_request_id().as_bytes().to_vec())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 32);
            assert!(
                id.iter()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn only_idempotent_methods_or_keyed_requests_repeat() {
        let none = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_repeatable(&method, &none), "{method}");
        }
        assert!(!is_repeatable(&Method::POST, &none));
        assert!(!is_repeatable(&Method::PATCH, &none));
        assert!(is_repeatable(
            &Method::POST,
            &headers(&[("idempotency-key", "k1")])
        ));
    }
}
