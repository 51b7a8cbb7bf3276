//! TLS termination on the public listener (rustls, `ring` backend, TLS 1.2 and 1.3).
//!
//! The certificate and key are PEM files (`gateway.tls_cert`, `gateway.tls_key`). The rustls
//! `ServerConfig` sits behind an [`ArcSwap`]: each accepted connection loads the current one,
//! so a reload (SIGHUP) gives new handshakes the new certificate while connections already
//! open keep theirs. ALPN offers `h2` first, then `http/1.1`: a client that supports both
//! gets HTTP/2 ([`crate::http2`]), one that offers nothing or `http/1.1` gets HTTP/1.1.
//! The leaf certificate's expiry (its `notAfter`, Unix seconds) is a gauge, set at each load,
//! so an alert can warn before it passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::gauge::Gauge;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::error::GatewayError;

/// The ALPN name of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";

/// The public listener's TLS settings, reloadable.
pub struct Tls {
    config: ArcSwap<ServerConfig>,
    /// `strata_gateway_tls_cert_expiry_timestamp_seconds`: the leaf's `notAfter`.
    expiry: Gauge,
}

/// A certificate and key read from their files, ready to install.
pub(crate) struct Loaded {
    config: Arc<ServerConfig>,
    /// The leaf certificate's `notAfter`, Unix seconds (`None`: not readable, 0 on the gauge).
    not_after: Option<i64>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (PEM, PKCS#8, PKCS#1 or SEC1), and
    /// sets `expiry` to the leaf's expiry.
    ///
    /// # Errors
    /// [`GatewayError::Config`] naming the file that cannot be read or used.
    pub fn load(cert: &Path, key: &Path, expiry: Gauge) -> Result<Self, GatewayError> {
        let loaded = server_config(cert, key)?;
        let tls = Self {
            config: ArcSwap::new(Arc::clone(&loaded.config)),
            expiry,
        };
        tls.install(loaded);
        Ok(tls)
    }

    /// Reads the files again; new handshakes use them, open connections keep theirs.
    ///
    /// # Errors
    /// As [`Tls::load`]; the certificate in use is kept then.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), GatewayError> {
        self.install(server_config(cert, key)?);
        Ok(())
    }

    /// Uses `loaded` for new handshakes.
    pub(crate) fn install(&self, loaded: Loaded) {
        self.config.store(loaded.config);
        self.expiry.set(loaded.not_after.unwrap_or(0));
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// The TLS files of a configuration, when both are set.
pub fn paths(config: &crate::config::GatewayConfig) -> Option<(PathBuf, PathBuf)> {
    config
        .tls_enabled()
        .then(|| (config.tls_cert.clone(), config.tls_key.clone()))
}

/// A rustls server configuration from PEM files, with the leaf certificate's expiry.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Loaded, GatewayError> {
    let problem = |key: &str, path: &Path, message: &dyn std::fmt::Display| GatewayError::Config {
        problems: vec![format!("{key}: {}: {message}", path.display())],
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| problem("gateway.tls_cert", cert, &e))?;
    if chain.is_empty() {
        return Err(problem(
            "gateway.tls_cert",
            cert,
            &"no certificate in the file",
        ));
    }
    let not_after = not_after(&chain[0]);
    if not_after.is_none() {
        tracing::warn!(file = %cert.display(), "cannot read the certificate's expiry");
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| problem("gateway.tls_key", key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("gateway.tls_cert", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| problem("gateway.tls_key", key, &e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// The `notAfter` of an X.509 certificate (DER), in Unix seconds: `Certificate` →
/// `tbsCertificate` → (`[0] version`,) `serialNumber`, `signature`, `issuer`, `validity` →
/// `notAfter`, a UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`). `None` for anything else: rustls has accepted the certificate by then,
/// so only the expiry gauge is lost.
fn not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (_, certificate, _) = tlv(der).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let (_, mut tbs, _) = tlv(certificate).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    // The optional explicit version, then serial number, signature and issuer.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = tlv(tbs)?.2;
    }
    let (_, validity, _) = tlv(tbs).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// One DER element: its tag, its content and the bytes after it.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (DER) that expires at midnight UTC of the date, and that
    /// instant in Unix seconds.
    fn certificate(year: i32, month: u8, day: u8) -> (Vec<u8>, i64) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (der, params.not_after.unix_timestamp())
    }

    #[test]
    fn reads_the_expiry_of_utc_and_generalized_times() {
        // UTCTime until 2049, GeneralizedTime from 2050 on (RFC 5280).
        for (year, month, day) in [(2031, 5, 17), (2049, 12, 31), (2050, 1, 1), (2124, 2, 29)] {
            let (der, expected) = certificate(year, month, day);
            assert_eq!(not_after(&der), Some(expected), "{year}-{month}-{day}");
        }
    }

    #[test]
    fn anything_else_has_no_expiry() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        let (mut truncated, _) = certificate(2031, 5, 17);
        truncated.truncate(40);
        assert_eq!(not_after(&truncated), None);
    }

    #[test]
    fn days_from_civil_counts_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
