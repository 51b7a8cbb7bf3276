//! The operations view (`[gateway.ops]`): what the live stream of `/admin/stream` may serve
//! and which other processes' figures it shows. Served by [`crate::ops`].

use serde::{Deserialize, Serialize};
use strata_core::config_section;

config_section! {
    /// The operations view on the admin listener (`/ops` and its live stream
    /// `/admin/stream`), `STRATA_GATEWAY_OPS_<KEY>`.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(default, deny_unknown_fields)]
    pub struct OpsConfig {
        /// Prometheus endpoints whose event-pipeline figures the view shows (consumer lag,
        /// unacknowledged events, dead letters, the outbox), read once a second: `http://`
        /// URLs such as `http://10.0.0.9:8301/metrics`; in a variable or flag, separated by
        /// commas. A source that is slow (over 800 ms) or down never holds the stream up: its
        /// last figures are shown marked stale. Default empty: `strata up` fills it with its
        /// workers' `/metrics`; a cluster lists its workers here.
        restart sources: Vec<String> = Vec::new() => url_list;
            check |urls| urls.iter().all(|url| parse_source(url).is_ok()),
            "expected http://host:port/path URLs, separated by commas",
        /// Clients the live stream serves at once; one more gets 429 `too_many_clients`.
        /// Default 16: a handful of people watching, each stream costing one task and one
        /// frame a second, while a script that opens streams in a loop cannot pile them up.
        restart max_clients: usize = 16;
            check |n| (1..=1024).contains(n), "must be 1..=1024",
    }
}

/// A source URL as the stream reads it: `http://host[:port]/path`.
///
/// # Errors
/// When it is not an absolute `http://` URL with a host.
pub fn parse_source(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!("`{url}`: expected http://host:port/path"));
    }
    Ok(uri)
}

/// A comma-separated list of URLs (blanks ignored).
///
/// # Errors
/// Never: the check judges the URLs.
fn url_list(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_absolute_http_urls() {
        assert!(parse_source("http://127.0.0.1:8301/metrics").is_ok());
        assert!(parse_source("http://worker/metrics").is_ok());
        for bad in [
            "https://w/metrics",
            "/metrics",
            "worker:8301",
            "ftp://w/x",
            "",
        ] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
        assert_eq!(
            url_list(" http://a/m , ,http://b/m"),
            Ok(vec!["http://a/m".to_owned(), "http://b/m".to_owned()])
        );
    }
}
