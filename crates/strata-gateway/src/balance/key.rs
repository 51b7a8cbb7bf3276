//! Affinity keys: what `consistent_hash` hashes (a cookie, a header, a query parameter or the
//! client's IP) and what `sticky` reads (its cookie naming an instance), taken from a request
//! head. Pure functions over `http` types, prepared once per pool so a request only looks up
//! what its pool needs.

use std::net::IpAddr;

use crate::config::{Algorithm, HashKey};
use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::hash::hash_bytes;

/// Where a pool takes the key of each request from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The algorithm uses no key.
    None,
    /// `consistent_hash`: the hash of this cookie's value.
    Cookie(String),
    /// `consistent_hash`: the hash of this header's value.
    Header(HeaderName),
    /// `consistent_hash`: the hash of this query parameter's raw value.
    Query(String),
    /// `consistent_hash`: the hash of the client's IP address.
    ClientIp,
    /// Rate limits: the user a valid session token names, which only a holder of the
    /// token secret can tell ([`crate::rate_limit::RateLimiter`] does); here, the client IP.
    JwtSubject,
    /// `sticky`: the instance id written in this cookie.
    Sticky(String),
}

impl KeySource {
    /// The key source of a pool running `algorithm` with the given settings.
    pub fn new(algorithm: Algorithm, hash_key: &HashKey, sticky_cookie: &str) -> Self {
        match algorithm {
            Algorithm::ConsistentHash => match hash_key {
                HashKey::Cookie(name) => Self::Cookie(name.clone()),
                // Validated by the configuration; a name that still fails hashes on the IP.
                HashKey::Header(name) => {
                    HeaderName::from_bytes(name.as_bytes()).map_or(Self::ClientIp, Self::Header)
                }
                HashKey::Query(name) => Self::Query(name.clone()),
                HashKey::ClientIp => Self::ClientIp,
                HashKey::JwtSubject => Self::JwtSubject,
            },
            Algorithm::Sticky => Self::Sticky(sticky_cookie.to_owned()),
            _ => Self::None,
        }
    }

    /// The key of a request. A hashing pool always gets one: a request without its key is
    /// hashed on its client IP, which keeps one client on one instance at least.
    pub fn key(&self, headers: &HeaderMap, uri: &Uri, client_ip: IpAddr) -> Option<u64> {
        let value = match self {
            Self::None => return None,
            Self::Sticky(name) => return cookie(headers, name).and_then(parse_id),
            Self::ClientIp | Self::JwtSubject => None,
            Self::Cookie(name) => cookie(headers, name),
            Self::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            Self::Query(name) => query(uri, name),
        };
        Some(match value {
            Some(bytes) => hash_bytes(bytes),
            None => ip_key(client_ip),
        })
    }
}

/// The hash of an IP address.
pub fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

/// The raw value of query parameter `name` (an empty value for a bare `name`).
pub fn query<'u>(uri: &'u Uri, name: &str) -> Option<&'u [u8]> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value.as_bytes())
    })
}

/// An instance id as written in a sticky cookie: 16 lower-case hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// An instance id read from a sticky cookie.
pub fn parse_id(text: &[u8]) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// The `Set-Cookie` value pinning a client to the instance with `id`: the whole site
/// (`Path=/`), hidden from scripts (`HttpOnly`), sent on top-level navigation from elsewhere
/// but not on cross-site subrequests (`SameSite=Lax`), and a session cookie (no expiry), so a
/// client is not pinned for longer than it cares.
pub fn sticky_cookie(name: &str, id: u64) -> Option<HeaderValue> {
    let text = format!("{name}={}; Path=/; HttpOnly; SameSite=Lax", format_id(id));
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
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

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let map = headers(&[("cookie", "a=1; sid=xyz"), ("cookie", "b=2;room=7")]);
        assert_eq!(cookie(&map, "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&map, "room"), Some(&b"7"[..]));
        assert_eq!(cookie(&map, "si"), None);
        assert_eq!(cookie(&map, "c"), None);
    }

    #[test]
    fn query_parameters_are_matched_by_whole_name() {
        let uri: Uri = "/api/v1/chat/ws?user=1&room=lobby&roomy=x".parse().unwrap();
        assert_eq!(query(&uri, "room"), Some(&b"lobby"[..]));
        assert_eq!(query(&uri, "roo"), None);
        let bare: Uri = "/x?flag".parse().unwrap();
        assert_eq!(query(&bare, "flag"), Some(&b""[..]));
        assert_eq!(query(&"/x".parse().unwrap(), "room"), None);
    }

    #[test]
    fn consistent_hash_keys_come_from_their_source_or_the_client_ip() {
        let room = KeySource::new(
            Algorithm::ConsistentHash,
            &HashKey::Query("room".into()),
            "c",
        );
        let uri: Uri = "/ws?room=7".parse().unwrap();
        let none = HeaderMap::new();
        assert_eq!(room.key(&none, &uri, IP), Some(hash_bytes(b"7")));
        let other_ip = "198.51.100.1".parse().unwrap();
        assert_eq!(room.key(&none, &uri, other_ip), Some(hash_bytes(b"7")));
        assert_eq!(
            room.key(&none, &"/ws".parse().unwrap(), IP),
            Some(ip_key(IP))
        );

        let header = KeySource::new(
            Algorithm::ConsistentHash,
            &HashKey::Header("x-user".into()),
            "c",
        );
        let map = headers(&[("x-user", "u42")]);
        assert_eq!(header.key(&map, &uri, IP), Some(hash_bytes(b"u42")));

        let ip = KeySource::new(Algorithm::ConsistentHash, &HashKey::ClientIp, "c");
        assert_eq!(ip.key(&map, &uri, IP), Some(ip_key(IP)));
        assert_ne!(ip_key(IP), ip_key(other_ip));

        let rr = KeySource::new(Algorithm::RoundRobin, &HashKey::ClientIp, "c");
        assert_eq!(rr.key(&map, &uri, IP), None);
    }

    #[test]
    fn sticky_cookies_round_trip_and_bad_ones_are_ignored() {
        let source = KeySource::new(Algorithm::Sticky, &HashKey::ClientIp, "aff");
        let id = 0x0123_4567_89ab_cdef;
        let set = sticky_cookie("aff", id).unwrap();
        assert_eq!(set, "aff=0123456789abcdef; Path=/; HttpOnly; SameSite=Lax");
        let uri = Uri::from_static("/");
        let sent = headers(&[("cookie", "aff=0123456789abcdef")]);
        assert_eq!(source.key(&sent, &uri, IP), Some(id));
        for bad in [
            "aff=xyz",
            "aff=0123",
            "aff=0123456789abcdefg",
            "other=0123456789abcdef",
        ] {
            assert_eq!(
                source.key(&headers(&[("cookie", bad)]), &uri, IP),
                None,
                "{bad}"
            );
        }
    }
}
