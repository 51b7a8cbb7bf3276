//! [`S3Objects`]: objects in a bucket of an S3-compatible server (MinIO, Ceph, moto, AWS),
//! shared by every instance. Path-style requests (`{endpoint}/{bucket}/{key}`) signed with AWS
//! Signature V4 (`sigv4`), over the workspace's HTTP client.
//!
//! The tag of an object travels as user metadata (`x-amz-meta-strata-etag`), so it is the same
//! on every backend; an object written by another tool has none, and its server's `ETag`
//! stands in (for a single-part upload, the MD5 of the bytes: a strong validator too).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use strata_core::config::Secret;
use time::OffsetDateTime;

use crate::sigv4::{self, EMPTY_SHA256, SigningKey};
use crate::{
    Object, ObjectKey, ObjectMeta, ObjectStore, ObjectsError, Result, checked_content_type, etag_of,
};

/// The user-metadata header that carries [`ObjectMeta::etag`].
const ETAG_HEADER: &str = "x-amz-meta-strata-etag";
/// Time to connect to the server. Short: it is near, and a dead one should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for a whole request: a few MiB on a local network take well under this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http://host:port` of the server (path-style requests; no TLS in this build).
    pub endpoint: String,
    /// The bucket, which must exist (see [`S3Objects::create_bucket`]).
    pub bucket: String,
    /// The region requests are signed for (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: Secret,
}

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: reqwest::Client,
    settings: S3Settings,
    /// The endpoint parsed, with the bucket as its path.
    bucket_url: Url,
    /// The `Host` header as the client sends it (and the signature covers it).
    host: String,
}

/// True when `name` is a bucket name S3 accepts: 3 to 63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl S3Objects {
    /// Checks the settings and builds the client. Nothing is sent: see
    /// [`S3Objects::ping`] for a check that the bucket answers.
    ///
    /// # Errors
    /// [`ObjectsError::Config`] for an endpoint that is not `http://host[:port]`, a bucket
    /// name S3 refuses, or an empty region or access key id.
    pub fn new(settings: S3Settings) -> Result<Self> {
        let config = |message: String| ObjectsError::Config(message);
        let endpoint = Url::parse(&settings.endpoint)
            .map_err(|e| config(format!("endpoint {:?}: {e}", settings.endpoint)))?;
        if endpoint.scheme() != "http" || endpoint.path() != "/" || endpoint.query().is_some() {
            return Err(config(format!(
                "endpoint {:?}: expected http://host[:port] (path-style requests; https is not \
                 supported by this build)",
                settings.endpoint
            )));
        }
        if !valid_bucket(&settings.bucket) {
            return Err(config(format!(
                "bucket {:?}: expected 3 to 63 of a-z 0-9 . -",
                settings.bucket
            )));
        }
        if settings.region.is_empty() || settings.access_key_id.is_empty() {
            return Err(config("S3 needs a region and an access key id".into()));
        }
        let host_name = endpoint.host_str().unwrap_or_default();
        let host = match endpoint.port() {
            Some(port) => format!("{host_name}:{port}"),
            None => host_name.to_owned(),
        };
        let mut bucket_url = endpoint;
        bucket_url.set_path(&settings.bucket);
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            settings,
            bucket_url,
            host,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// Creates the bucket (for tests and first set-up; a deployment's bucket usually exists).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses (an existing bucket owned by someone else).
    pub async fn create_bucket(&self) -> Result<()> {
        let path = format!("/{}", self.settings.bucket);
        let response = self.send(Method::PUT, &path, Bytes::new(), &[]).await?;
        expect_success(response).await.map(|_| ())
    }

    /// Deletes the bucket, which must be empty.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses (a bucket that still holds objects).
    pub async fn delete_bucket(&self) -> Result<()> {
        let path = format!("/{}", self.settings.bucket);
        let response = self.send(Method::DELETE, &path, Bytes::new(), &[]).await?;
        expect_success(response).await.map(|_| ())
    }

    /// Checks that the bucket answers (`HEAD` of the bucket), for start-up and readiness.
    ///
    /// # Errors
    /// When the server cannot be reached or the bucket does not exist.
    pub async fn ping(&self) -> Result<()> {
        let path = format!("/{}", self.settings.bucket);
        let response = self.send(Method::HEAD, &path, Bytes::new(), &[]).await?;
        expect_success(response).await.map(|_| ())
    }

    fn object_path(&self, key: &ObjectKey) -> String {
        // Keys are unreserved characters and `/` only (`ObjectKey`): no encoding needed.
        format!("/{}/{}", self.settings.bucket, key.as_str())
    }

    /// Sends a signed request with `body` and `extra` headers (lowercase names).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let payload_sha256 = if body.is_empty() {
            EMPTY_SHA256.to_owned()
        } else {
            sigv4::sha256_hex(&body)
        };
        let date = sigv4::amz_date(OffsetDateTime::now_utc());
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &self.host),
            ("x-amz-content-sha256", &payload_sha256),
            ("x-amz-date", &date),
        ];
        headers.extend_from_slice(extra);
        let authorization = sigv4::authorization(
            &sigv4::Request {
                method: method.as_str(),
                path,
                query: "",
                headers: &headers,
                payload_sha256: &payload_sha256,
            },
            &date,
            &SigningKey {
                access_key_id: &self.settings.access_key_id,
                secret_access_key: self.settings.secret_access_key.expose(),
                region: &self.settings.region,
            },
        );
        let mut url = self.bucket_url.clone();
        url.set_path(path);
        let mut request = self
            .client
            .request(method, url)
            .header("authorization", authorization);
        // `host` is set by the client from the URL, to the same value.
        for (name, value) in &headers[1..] {
            request = request.header(*name, *value);
        }
        Ok(request.body(body).send().await?)
    }
}

/// The response when its status is a success, otherwise [`ObjectsError::S3`].
async fn expect_success(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    Err(ObjectsError::S3 {
        status: status.as_u16(),
        message: text.chars().take(200).collect(),
    })
}

/// The metadata in the headers of a `GET` or `HEAD` answer.
fn meta_of(key: &ObjectKey, headers: &HeaderMap) -> Result<ObjectMeta> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let corrupt = |reason| ObjectsError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let etag = text(ETAG_HEADER)
        .or_else(|| text(ETAG.as_str()).map(|t| t.trim_matches('"')))
        .ok_or_else(|| corrupt("no tag"))?;
    Ok(ObjectMeta {
        content_type: text(CONTENT_TYPE.as_str())
            .unwrap_or("application/octet-stream")
            .to_owned(),
        etag: etag.to_owned(),
        size: text(CONTENT_LENGTH.as_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("no length"))?,
    })
}

impl ObjectStore for S3Objects {
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<ObjectMeta> {
        let meta = ObjectMeta {
            content_type: checked_content_type(content_type)?.to_owned(),
            etag: etag_of(&bytes),
            size: bytes.len() as u64,
        };
        let extra = [
            ("content-type", meta.content_type.as_str()),
            (ETAG_HEADER, meta.etag.as_str()),
        ];
        let response = self
            .send(Method::PUT, &self.object_path(key), bytes, &extra)
            .await?;
        expect_success(response).await?;
        Ok(meta)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>> {
        let response = self
            .send(Method::GET, &self.object_path(key), Bytes::new(), &[])
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_success(response).await?;
        let mut meta = meta_of(key, response.headers())?;
        let bytes = response.bytes().await?;
        meta.size = bytes.len() as u64;
        Ok(Some(Object { meta, bytes }))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let response = self
            .send(Method::HEAD, &self.object_path(key), Bytes::new(), &[])
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_success(response).await?;
        meta_of(key, response.headers()).map(Some)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let response = self
            .send(Method::DELETE, &self.object_path(key), Bytes::new(), &[])
            .await?;
        // S3 answers 204 whether or not there was an object; some servers say 404.
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect_success(response).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: Secret::new("secret"),
        }
    }

    #[test]
    fn endpoints_and_buckets_are_checked() {
        let s3 = S3Objects::new(settings("http://127.0.0.1:5000", "images")).unwrap();
        assert_eq!(s3.host, "127.0.0.1:5000");
        assert_eq!(s3.bucket_url.as_str(), "http://127.0.0.1:5000/images");
        let s3 = S3Objects::new(settings("http://minio", "images")).unwrap();
        assert_eq!(s3.host, "minio");
        for (endpoint, bucket) in [
            ("https://s3.amazonaws.com", "images"),
            ("http://h/path", "images"),
            ("not a url", "images"),
            ("http://h", "Images"),
            ("http://h", "ab"),
            ("http://h", "-images"),
        ] {
            assert!(
                matches!(
                    S3Objects::new(settings(endpoint, bucket)),
                    Err(ObjectsError::Config(_))
                ),
                "{endpoint} {bucket}"
            );
        }
    }

    #[test]
    fn the_secret_never_prints() {
        let s3 = S3Objects::new(settings("http://h", "images")).unwrap();
        let printed = format!("{s3:?}");
        assert!(!printed.contains("secret\""), "{printed}");
        assert!(printed.contains("Secret(***)"), "{printed}");
    }
}
