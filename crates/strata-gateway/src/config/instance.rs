//! Instance URLs (`http://host:port?weight=5&max_in_flight=100`) and the `upstream` list of
//! pools that carries them on a flag or a variable.

use super::pool::PoolConfig;

/// Largest instance weight. 1000 gives per-mille resolution while keeping the weighted round
/// robin schedule and the hash ring (both sized by the sum of weights) small.
pub const MAX_WEIGHT: u32 = 1000;

/// An instance URL, parsed: `http://host:port`, optionally followed by `/` and by the
/// instance's settings as query parameters, `?weight=5&max_in_flight=100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUrl {
    /// Host name or IP address (an IPv6 address keeps its brackets).
    pub host: String,
    pub port: u16,
    /// The instance's share under weighted algorithms (`weighted_round_robin`,
    /// `weighted_random`, `least_connections`, `consistent_hash`), 1..=[`MAX_WEIGHT`].
    /// Default 1: instances of a pool are usually alike.
    pub weight: u32,
    /// Requests in flight on this instance above which the balancer passes it over; 0 (the
    /// default) means no limit. Checked when picking, so concurrent picks may overshoot by a
    /// few requests: a guard against overload, not an exact quota.
    pub max_in_flight: u64,
}

impl InstanceUrl {
    /// `host:port`, the instance's identity (metrics label, admin API, sticky cookie).
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses an instance URL: `http://host:port[/][?weight=W&max_in_flight=M]`.
///
/// # Errors
/// A message naming the URL when the scheme is not `http`, the port is missing or bad, a path
/// follows the authority, or a query parameter is unknown or out of range.
pub fn parse_instance_url(url: &str) -> Result<InstanceUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("instance `{url}`: expected http://host:port"))?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("instance `{url}`: missing port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("instance `{url}`: bad port"))?;
    if host.is_empty() || authority.contains('/') {
        return Err(format!("instance `{url}`: expected http://host:port"));
    }
    let mut parsed = InstanceUrl {
        host: host.to_owned(),
        port,
        weight: 1,
        max_in_flight: 0,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "weight" => {
                parsed.weight = value
                    .parse()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| format!("instance `{url}`: weight must be 1..={MAX_WEIGHT}"))?;
            }
            "max_in_flight" => {
                parsed.max_in_flight = value.parse().map_err(|_| {
                    format!("instance `{url}`: max_in_flight must be a whole number (0: no limit)")
                })?;
            }
            other => {
                return Err(format!(
                    "instance `{url}`: unknown setting `{other}` (expected weight, max_in_flight)"
                ));
            }
        }
    }
    Ok(parsed)
}

/// Parses `api=http://h:p,http://h:p;chat=http://h:p` (pools separated by `;`).
pub(super) fn parse_upstreams(value: &str) -> Result<Vec<PoolConfig>, String> {
    value
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, urls) = part
                .split_once('=')
                .ok_or_else(|| format!("expected POOL=URL[,URL…], got `{part}`"))?;
            let instances: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            for url in &instances {
                parse_instance_url(url)?;
            }
            Ok(PoolConfig {
                name: name.trim().to_owned(),
                instances,
            })
        })
        .collect()
}
