//! How a pool's responses are compressed on their way to clients (`gateway.<pool>.compression`):
//! [`CompressionConfig`] and the [`Encoding`]s the gateway can produce.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strata_core::config_section;

/// A content coding the gateway can apply to a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Brotli (RFC 7932): smaller than gzip at the same speed for text.
    Br,
    /// gzip (RFC 1952): understood by every client.
    Gzip,
}

impl Encoding {
    /// Every encoding, in documentation order.
    pub const ALL: [Self; 2] = [Self::Br, Self::Gzip];

    /// The name in `Accept-Encoding` and `Content-Encoding` (`br`, `gzip`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Gzip => "gzip",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown encoding `{s}`, expected br or gzip"))
    }
}

config_section! {
    /// Compression of the pool's responses, negotiated with each client by its
    /// `Accept-Encoding`.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(default, deny_unknown_fields)]
    pub struct CompressionConfig {
        /// Compress responses for clients that accept it. Only bodies of `content_types` of
        /// at least `min_bytes` (or of unknown length, compressed as they stream) are, never
        /// one that is encoded already, nor the answers to `HEAD`, `204`, `304`, `206`
        /// (ranges) or upgrades; a compressed response says `Vary: Accept-Encoding`, loses
        /// its `Content-Length` (or gets the new one) and its `ETag` becomes weak. Default
        /// true: the web pages and JSON lists shrink several times on the wire, while small
        /// answers, under `min_bytes`, cost nothing.
        live enabled: bool = true,
        /// Smallest body compressed, in bytes (a body of unknown length is always). Default
        /// 1024: below that a packet carries the body anyway, and the work would buy nothing.
        live min_bytes: u64 = 1024,
        /// Encodings offered, in order of preference when a client accepts several as much
        /// (`br`, `gzip`); in a variable or flag, separated by commas. Default `br,gzip`:
        /// brotli (quality 4) is smaller than gzip (level 6) at a similar cost, and every
        /// client that does not take it takes gzip.
        live encodings: Vec<Encoding> = vec![Encoding::Br, Encoding::Gzip] => encoding_list;
            check |list| !list.is_empty(), "expected at least one of br, gzip (set enabled = false to turn compression off)",
        /// Media types compressed: `type/subtype`, or `type/*` for every subtype; in a
        /// variable or flag, separated by commas. Default: text, JSON, JavaScript, XML and
        /// SVG, which shrink; images, video and archives are compressed already.
        live content_types: Vec<String> = default_content_types() => type_list;
            check |types| types.iter().all(|t| is_media_range(t)),
            "expected media types such as text/* or application/json",
    }
}

/// The media types compressed by default.
fn default_content_types() -> Vec<String> {
    [
        "text/*",
        "application/json",
        "application/problem+json",
        "application/manifest+json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
    ]
    .map(String::from)
    .to_vec()
}

/// A comma-separated list of encodings.
///
/// # Errors
/// The first unknown encoding.
fn encoding_list(value: &str) -> Result<Vec<Encoding>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::parse)
        .collect()
}

/// A comma-separated list of media types (blanks ignored, lower-cased).
///
/// # Errors
/// Never: the check judges the types.
fn type_list(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// `type/subtype` or `type/*`, both tokens.
fn is_media_range(range: &str) -> bool {
    let token = |s: &str| super::algorithm::is_token(s) && s != "*";
    match range.split_once('/') {
        Some((kind, "*")) => token(kind),
        Some((kind, subtype)) => token(kind) && token(subtype),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_parse_and_print_back() {
        for encoding in Encoding::ALL {
            assert_eq!(encoding.as_str().parse::<Encoding>(), Ok(encoding));
        }
        assert_eq!(
            encoding_list(" gzip, br "),
            Ok(vec![Encoding::Gzip, Encoding::Br])
        );
        assert!(encoding_list("gzip,zstd").is_err());
    }

    #[test]
    fn media_ranges_are_types_or_type_wildcards() {
        for ok in ["text/*", "application/json", "image/svg+xml"] {
            assert!(is_media_range(ok), "{ok}");
        }
        for bad in ["*/*", "text", "text/", "/json", "a b/c"] {
            assert!(!is_media_range(bad), "{bad}");
        }
        assert!(default_content_types().iter().all(|t| is_media_range(t)));
    }
}
