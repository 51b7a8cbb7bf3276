//! The balancing vocabulary of a pool's settings: [`Algorithm`] and [`HashKey`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The load-balancing algorithms a pool can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to the weights, interleaved like nginx's smooth weighted round
    /// robin (weights 5, 1, 1 give a a b a c a a).
    WeightedRoundRobin,
    /// A uniformly random instance.
    Random,
    /// A random instance, in proportion to the weights.
    WeightedRandom,
    /// The instance with the fewest requests in flight relative to its weight.
    LeastConnections,
    /// The less loaded of two random instances.
    PowerOfTwo,
    /// A hash ring on a request key (the pool's `hash_key`) with bounded load.
    ConsistentHash,
    /// First contact by least connections, then the instance named in a cookie.
    Sticky,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Self; 8] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::Random,
        Self::WeightedRandom,
        Self::LeastConnections,
        Self::PowerOfTwo,
        Self::ConsistentHash,
        Self::Sticky,
    ];

    /// The configuration name (`round_robin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::Random => "random",
            Self::WeightedRandom => "weighted_random",
            Self::LeastConnections => "least_connections",
            Self::PowerOfTwo => "power_of_two",
            Self::ConsistentHash => "consistent_hash",
            Self::Sticky => "sticky",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown algorithm `{s}`, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Where a hashing algorithm or a rate limit takes its key from, written `cookie:NAME`,
/// `header:NAME`, `query:NAME`, `client_ip` or (rate limits only) `jwt_subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HashKey {
    /// The value of a cookie.
    Cookie(String),
    /// The value of a request header (the name is kept in lower case).
    Header(String),
    /// The raw (not percent-decoded) value of a query parameter.
    Query(String),
    /// The client's IP address as the gateway sees it (the TCP peer, not `X-Forwarded-For`,
    /// which any client can forge).
    ClientIp,
    /// The subject (`sub`, the user id) of the request's session token (`Authorization:
    /// Bearer`, or the `token` query parameter of a WebSocket), once its signature checks
    /// with the api's secret: a client cannot make up subjects to get fresh allowances.
    /// Rate limits only.
    JwtSubject,
}

impl FromStr for HashKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "client_ip" => return Ok(Self::ClientIp),
            "jwt_subject" => return Ok(Self::JwtSubject),
            _ => {}
        }
        let bad = || {
            format!(
                "`{s}`: expected cookie:NAME, header:NAME, query:NAME, client_ip or jwt_subject"
            )
        };
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "cookie" if is_token(name) => Ok(Self::Cookie(name.to_owned())),
            "header" if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Ok(Self::Header(name.to_ascii_lowercase()))
            }
            "query"
                if !name.is_empty()
                    && !name
                        .chars()
                        .any(|c| matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace()) =>
            {
                Ok(Self::Query(name.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cookie(name) => write!(f, "cookie:{name}"),
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::ClientIp => f.write_str("client_ip"),
            Self::JwtSubject => f.write_str("jwt_subject"),
        }
    }
}

impl TryFrom<String> for HashKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HashKey> for String {
    fn from(key: HashKey) -> String {
        key.to_string()
    }
}

/// An RFC 6265 cookie name (an RFC 9110 token).
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
