//! HTTPS on the public listener with a certificate generated in the test, its reload, and
//! slow TLS clients.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::{Backend, config, spawn_gateway_with};

/// A CA and a `localhost` certificate it signed, written as PEM files in a fresh directory.
pub(crate) struct TestPki {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// When the `localhost` certificate expires, Unix seconds.
    expires: i64,
}

pub(crate) fn pki(dir: &std::path::Path) -> TestPki {
    pki_until(dir, (2061, 7, 28))
}

/// As [`pki`], with a `localhost` certificate that expires at the start of the day
/// `(year, month, day)`, UTC.
fn pki_until(dir: &std::path::Path, (year, month, day): (i32, u8, u8)) -> TestPki {
    std::fs::create_dir_all(dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params.not_after = rcgen::date_time_ymd(year, month, day);
    let expires = leaf_params.not_after.unix_timestamp();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TestPki {
        ca: ca.der().clone(),
        cert,
        key,
        expires,
    }
}

/// The gateway's `strata_gateway_tls_cert_expiry_timestamp_seconds`.
async fn certificate_expiry(gateway: &crate::helpers::TestGateway) -> i64 {
    let text = gateway
        .client
        .get(format!("http://{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("strata_gateway_tls_cert_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no expiry in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

pub(crate) fn temp_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("strata-gw-{what}-{}-{nanos}", std::process::id()))
}

fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// `GET path` over TLS; the whole response as text (the request says `Connection: close`).
async fn https_get(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    path: &str,
) -> Result<String, std::io::Error> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(ca).connect(name, stream).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    // A peer that closes without close_notify is fine here.
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn https_through_the_gateway_and_a_certificate_reload() {
    let backend = Backend::start("api-1").await;
    let dir = temp_dir("tls");
    let first = pki(&dir.join("one"));
    let mut config = config(&[("api", vec![backend.url()])]);
    config.tls_cert = first.cert.clone();
    config.tls_key = first.key.clone();
    let limits = strata_gateway::Limits::from_config(&config);
    let gateway = spawn_gateway_with(config.clone(), limits).await;

    let response = https_get(gateway.addr, &first.ca, "/secure").await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from api-1"), "{response}");
    assert_eq!(backend.seen()[0].path, "/secure");
    assert_eq!(certificate_expiry(&gateway).await, first.expires);
    // The instance learns that the client came over TLS.
    assert_eq!(backend.seen()[0].headers["x-forwarded-proto"], "https");
    // Plain HTTP on the TLS port is refused, not served.
    let plain =
        crate::helpers::raw_exchange(gateway.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.contains("hello"), "{plain}");

    // A new certificate (another CA) for new handshakes after a reload.
    let second = pki_until(&dir.join("two"), (2062, 3, 1));
    config.tls_cert = second.cert.clone();
    config.tls_key = second.key.clone();
    gateway.handle.reload(&config).unwrap();
    let response = https_get(gateway.addr, &second.ca, "/renewed")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(certificate_expiry(&gateway).await, second.expires);
    assert!(https_get(gateway.addr, &first.ca, "/old").await.is_err());
    // A missing file fails the reload and keeps the certificate in use.
    config.tls_key = dir.join("missing.pem");
    assert!(gateway.handle.reload(&config).is_err());
    assert!(
        https_get(gateway.addr, &second.ca, "/kept")
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_silent_tls_client_is_closed_within_the_header_timeout_while_others_are_served() {
    let backend = Backend::start("api-1").await;
    let dir = temp_dir("slow-tls");
    let pki = pki(&dir);
    let mut config = config(&[("api", vec![backend.url()])]);
    config.tls_cert = pki.cert.clone();
    config.tls_key = pki.key.clone();
    let limits = strata_gateway::Limits {
        header_read_timeout: Duration::from_millis(500),
        ..strata_gateway::Limits::from_config(&config)
    };
    let gateway = spawn_gateway_with(config, limits).await;
    let started = Instant::now();
    // Sends one byte of a ClientHello, then nothing.
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    silent.write_all(&[0x16]).await.unwrap();
    let served = https_get(gateway.addr, &pki.ca, "/meanwhile")
        .await
        .unwrap();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the silent connection stayed open");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `GET path` over TLS with a client's own `X-Forwarded-Proto` claim.
async fn https_get_claiming(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    path: &str,
) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(ca).connect(name, stream).await.unwrap();
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: gopher\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn https_on_two_workers_forwards_proto_https_whatever_the_client_claims() {
    let backend = Backend::start("api-1").await;
    let dir = temp_dir("tls-workers");
    let pki = pki(&dir);
    let mut config = config(&[("api", vec![backend.url()])]);
    config.tls_cert = pki.cert.clone();
    config.tls_key = pki.key.clone();
    let limits = strata_gateway::Limits {
        workers: 2,
        ..strata_gateway::Limits::from_config(&config)
    };
    let gateway = spawn_gateway_with(config, limits).await;
    let connections = 24;
    for i in 0..connections {
        let response = https_get_claiming(gateway.addr, &pki.ca, &format!("/s{i}")).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 24);
    for request in &seen {
        let proto: Vec<_> = request
            .headers
            .get_all("x-forwarded-proto")
            .iter()
            .collect();
        assert_eq!(proto, ["https"], "{}", request.path);
    }
    // Both workers terminated TLS (24 connections all on one: a chance of 2^-23).
    let accepted = gateway.handle.accepted_per_worker();
    assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    let _ = std::fs::remove_dir_all(dir);
}
