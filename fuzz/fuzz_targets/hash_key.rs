//! Affinity keys: a pool's `hash_key` setting (`HashKey`'s parser) and the key
//! `consistent_hash` and `sticky` take from a request's cookies, headers, query or address.
//!
//! Input: the `hash_key` text, a line feed, then a client's request head. Properties:
//! - a `hash_key` that parses prints back to text that parses to the same key;
//! - a hashing pool always gets a key: the hash of the value its source finds, the hash of
//!   the client's address otherwise; no key for other algorithms;
//! - a cookie's value comes from one `name=value` pair of a `Cookie` header, with exactly
//!   that name, and holds no `;`; a query parameter's value is a raw part of the query with
//!   no `&`;
//! - the key depends on its source alone: headers after it and other query parameters change
//!   nothing, and computing it twice gives the same key;
//! - a sticky cookie's instance id is 16 hex digits, and ids written by the gateway read back.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use strata_gateway::balance::hash::hash_bytes;
use strata_gateway::balance::key::{
    KeySource, cookie, format_id, ip_key, parse_id, query, sticky_cookie,
};
use strata_gateway::config::{Algorithm, HashKey};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn parse_client(bytes: &[u8]) -> Option<(Uri, HeaderMap)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    request.parse(bytes).ok()?;
    let uri: Uri = request.path?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        if header.name.is_empty() {
            break;
        }
        headers.append(
            HeaderName::from_bytes(header.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(header.value).ok()?,
        );
    }
    Some((uri, headers))
}

fn within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

fuzz_target!(|input: &[u8]| {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(spec) = std::str::from_utf8(&input[..newline]) else {
        return;
    };
    let Some((uri, headers)) = parse_client(&input[newline + 1..]) else {
        return;
    };

    // The setting.
    let Ok(hash_key) = spec.parse::<HashKey>() else {
        return;
    };
    assert_eq!(
        hash_key.to_string().parse::<HashKey>(),
        Ok(hash_key.clone())
    );

    let source = KeySource::new(Algorithm::ConsistentHash, &hash_key, "");
    let key = source.key(&headers, &uri, CLIENT);
    assert_eq!(key, source.key(&headers, &uri, CLIENT));
    let found: Option<&[u8]> = match &hash_key {
        HashKey::Cookie(name) => {
            let value = cookie(&headers, name);
            if let Some(value) = value {
                assert!(!value.contains(&b';'));
                let pair = headers
                    .get_all(COOKIE)
                    .iter()
                    .find(|v| within(value, v.as_bytes()));
                let pair = pair.expect("a cookie value from outside the Cookie headers");
                let at = value.as_ptr() as usize - pair.as_bytes().as_ptr() as usize;
                let before = &pair.as_bytes()[..at];
                assert!(before.ends_with(b"="));
                let start = before[..at - 1]
                    .iter()
                    .rposition(|&b| b == b';')
                    .map_or(0, |p| p + 1);
                assert_eq!(before[start..at - 1].trim_ascii(), name.as_bytes());
            }
            value
        }
        HashKey::Header(name) => headers.get(name.as_str()).map(HeaderValue::as_bytes),
        HashKey::Query(name) => {
            let value = query(&uri, name);
            // A bare `name` has the empty value.
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                let all = uri.query().map(str::as_bytes).unwrap_or_default();
                assert!(within(value, all), "a query value from outside the query");
                assert!(!value.contains(&b'&'));
            }
            value
        }
        // Without the token secret a pool cannot read a subject: the client IP.
        HashKey::ClientIp | HashKey::JwtSubject => None,
    };
    assert_eq!(key, Some(found.map_or(ip_key(CLIENT), hash_bytes)));

    // Headers after the first of a name change nothing; neither does another parameter.
    let mut more = headers.clone();
    for (name, value) in &headers {
        more.append(name.clone(), value.clone());
    }
    let other_uri: Option<Uri> = match uri.query() {
        Some(q) => format!("{}?zz_unrelated=1&{q}", uri.path()).parse().ok(),
        None => None,
    };
    match &hash_key {
        HashKey::Header(_) | HashKey::ClientIp | HashKey::JwtSubject => {
            assert_eq!(source.key(&more, &uri, CLIENT), key);
        }
        HashKey::Query(name) if name != "zz_unrelated" => {
            if let Some(other) = other_uri {
                assert_eq!(source.key(&headers, &other, CLIENT), key);
            }
        }
        _ => {}
    }

    // Algorithms without a key.
    let none = KeySource::new(Algorithm::RoundRobin, &hash_key, "");
    assert_eq!(none.key(&headers, &uri, CLIENT), None);

    // Sticky cookies: the name from the setting when it is a cookie's.
    if let HashKey::Cookie(name) = &hash_key {
        let sticky = KeySource::new(Algorithm::Sticky, &hash_key, name);
        let id = sticky.key(&headers, &uri, CLIENT);
        if let Some(id) = id {
            assert_eq!(cookie(&headers, name).map(<[u8]>::len), Some(16));
            assert_eq!(parse_id(format_id(id).as_bytes()), Some(id));
        }
        let written = hash_bytes(input);
        let set = sticky_cookie(name, written).expect("a sticky cookie that is not a header");
        let pair = set
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        let value = HeaderValue::from_bytes(pair).expect("a cookie pair");
        let mut sent = HeaderMap::new();
        sent.insert(COOKIE, value);
        assert_eq!(sticky.key(&sent, &uri, CLIENT), Some(written));
    }
});
