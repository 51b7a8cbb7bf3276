//! How the gateway speaks to a pool's instances: [`UpstreamProtocol`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The protocol of the connections from the gateway to a pool's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1: one request at a time per connection (or a pipelined batch of safe ones,
    /// with `pipeline_depth` above 1), a pool of keep-alive connections per instance.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: many requests in flight on one
    /// connection, none waiting for another.
    #[default]
    H2c,
}

impl UpstreamProtocol {
    /// Every protocol, in documentation order.
    pub const ALL: [Self; 2] = [Self::Http1, Self::H2c];

    /// The configuration name (`http1`, `h2c`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
        }
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpstreamProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| format!("unknown upstream protocol `{s}`, expected http1 or h2c"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for protocol in UpstreamProtocol::ALL {
            assert_eq!(protocol.as_str().parse::<UpstreamProtocol>(), Ok(protocol));
        }
        assert!("http2".parse::<UpstreamProtocol>().is_err());
    }
}
