//! What a load run does: target, concurrency, bounds, method and paths.

use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Method, Uri};

use crate::LabError;

/// Most workers (connections) one run may open; more would exhaust file descriptors before
/// telling anything about the server.
pub const MAX_CONCURRENCY: usize = 4096;
/// Longest run: an hour. Every run is bounded in time, whatever its request bound.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most requests one run may issue.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// A load run. Build one with [`LoadSpec::new`] and adjust the public fields.
///
/// A run stops issuing requests at the first of: `duration` elapsed, `requests` issued, or the
/// caller's cancellation ([`run_until`](crate::run_until)). Requests in flight at that moment
/// finish (each bounded by `request_timeout`) and are counted.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target base URL, `http://host:port[/path]`. Its path is used when `paths` is empty.
    pub url: String,
    /// Workers, each with one keep-alive connection. Default 8.
    pub concurrency: usize,
    /// Time bound, always in force. Default 10 s.
    pub duration: Duration,
    /// Request bound; `None` runs for `duration`. Default `None`.
    pub requests: Option<u64>,
    /// Method of every request (sent without a body). Default `GET`.
    pub method: Method,
    /// Paths (with optional query) requested in turn: request `n` uses `paths[n % len]`.
    /// Empty (default): the path of `url`.
    pub paths: Vec<String>,
    /// Time to open a TCP connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Time for one request, from writing it to the end of the response body. Default 10 s.
    pub request_timeout: Duration,
    /// Response header naming the instance that served a request. Default `x-strata-instance`.
    pub instance_header: HeaderName,
}

impl LoadSpec {
    /// A spec for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            concurrency: 8,
            duration: Duration::from_secs(10),
            requests: None,
            method: Method::GET,
            paths: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            instance_header: HeaderName::from_static("x-strata-instance"),
        }
    }

    /// Checks every bound and parses the URL and paths.
    ///
    /// # Errors
    /// [`LabError::Spec`] naming the first field out of bounds or malformed.
    pub(crate) fn validate(&self) -> Result<Target, LabError> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(LabError::spec(
                "concurrency",
                format!("expected 1..={MAX_CONCURRENCY}"),
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LabError::spec(
                "duration",
                format!(
                    "expected more than 0 s and at most {} s",
                    MAX_DURATION.as_secs()
                ),
            ));
        }
        if let Some(n) = self.requests
            && !(1..=MAX_REQUESTS).contains(&n)
        {
            return Err(LabError::spec(
                "requests",
                format!("expected 1..={MAX_REQUESTS}"),
            ));
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() || value > MAX_DURATION {
                return Err(LabError::spec(
                    field,
                    "expected more than 0 s and at most an hour",
                ));
            }
        }
        let url: Uri = self
            .url
            .parse()
            .map_err(|e| LabError::spec("url", format!("`{}`: {e}", self.url)))?;
        if url.scheme() != Some(&Scheme::HTTP) {
            return Err(LabError::spec(
                "url",
                format!("`{}`: expected http://host:port", self.url),
            ));
        }
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| LabError::spec("url", format!("`{}`: missing host", self.url)))?;
        let paths = if self.paths.is_empty() {
            vec![
                url.path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            ]
        } else {
            self.paths
                .iter()
                .map(|p| parse_path(p))
                .collect::<Result<_, _>>()?
        };
        Ok(Target { authority, paths })
    }
}

/// The parsed target of a valid spec.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) authority: Authority,
    pub(crate) paths: Vec<PathAndQuery>,
}

impl Target {
    /// `host:port` to connect to (port 80 when the URL has none).
    pub(crate) fn host_port(&self) -> String {
        format!(
            "{}:{}",
            self.authority.host(),
            self.authority.port_u16().unwrap_or(80)
        )
    }
}

fn parse_path(path: &str) -> Result<PathAndQuery, LabError> {
    if !path.starts_with('/') {
        return Err(LabError::spec(
            "paths",
            format!("`{path}`: expected an absolute path such as /api/v1/products"),
        ));
    }
    path.parse()
        .map_err(|e| LabError::spec("paths", format!("`{path}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(spec: &LoadSpec) -> &'static str {
        match spec.validate() {
            Err(LabError::Spec { field, .. }) => field,
            other => panic!("expected a spec error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_take_the_path_of_the_url() {
        let target = LoadSpec::new("http://127.0.0.1:8080/api/v1/products?page=2")
            .validate()
            .unwrap();
        assert_eq!(target.host_port(), "127.0.0.1:8080");
        assert_eq!(target.paths, ["/api/v1/products?page=2"]);
        let target = LoadSpec::new("http://localhost").validate().unwrap();
        assert_eq!(target.host_port(), "localhost:80");
        assert_eq!(target.paths, ["/"]);
    }

    #[test]
    fn every_bound_is_enforced() {
        let ok = LoadSpec::new("http://127.0.0.1:1");
        assert_eq!(
            field(&LoadSpec {
                concurrency: 0,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(&LoadSpec {
                concurrency: MAX_CONCURRENCY + 1,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(&LoadSpec {
                duration: Duration::ZERO,
                ..ok.clone()
            }),
            "duration"
        );
        assert_eq!(
            field(&LoadSpec {
                duration: MAX_DURATION * 2,
                ..ok.clone()
            }),
            "duration"
        );
        assert_eq!(
            field(&LoadSpec {
                requests: Some(0),
                ..ok.clone()
            }),
            "requests"
        );
        assert_eq!(
            field(&LoadSpec {
                request_timeout: Duration::ZERO,
                ..ok.clone()
            }),
            "request_timeout"
        );
        assert_eq!(
            field(&LoadSpec {
                paths: vec!["api".into()],
                ..ok.clone()
            }),
            "paths"
        );
        assert_eq!(field(&LoadSpec::new("https://example.com")), "url");
        assert_eq!(field(&LoadSpec::new("/just/a/path")), "url");
        assert_eq!(field(&LoadSpec::new("not a url")), "url");
    }
}
