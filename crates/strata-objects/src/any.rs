//! [`AnyObjects`]: the backend a role holds, chosen once at start-up from `[objects]`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_core::config::ObjectsConfig;

use crate::{
    LocalObjects, Object, ObjectKey, ObjectMeta, ObjectStore, ObjectsError, Result, S3Objects,
    S3Settings,
};

/// One of the object store backends, chosen by configuration ([`AnyObjects::open`]).
///
/// An enum rather than a trait object, so calls are static and the async methods need no boxing.
#[derive(Clone, Debug)]
pub enum AnyObjects {
    /// A directory of this machine (one instance, or the processes of one machine).
    Local(LocalObjects),
    /// A bucket of an S3-compatible server, shared by every instance (boxed: its client and
    /// settings are much larger than a path).
    S3(Box<S3Objects>),
}

/// The directory of `objects.url` when it is empty: `<data_dir>/objects`.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("objects")
}

/// The directory `config.url` names, when it names one (empty: `<data_dir>/objects`;
/// `file:PATH`: `PATH`); `None` for a bucket or another URL.
pub fn local_dir(config: &ObjectsConfig, data_dir: &Path) -> Option<PathBuf> {
    match config.url.as_str() {
        "" => Some(default_dir(data_dir)),
        url => url
            .strip_prefix("file:")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from),
    }
}

impl AnyObjects {
    /// Opens the backend `config.url` names:
    /// - empty: the directory `<data_dir>/objects`;
    /// - `file:PATH`: the directory `PATH`;
    /// - `s3://BUCKET`: the bucket at `config.endpoint`, signed with the configured region and
    ///   keys; the bucket must exist and answer (checked here, so a wrong setting stops the
    ///   start rather than the first upload).
    ///
    /// # Errors
    /// [`ObjectsError::Config`] for another URL or incomplete S3 settings; [`ObjectsError::Io`]
    /// when the directory cannot be created; the S3 errors of [`S3Objects::ping`].
    pub async fn open(config: &ObjectsConfig, data_dir: &Path) -> Result<Self> {
        let url = config.url.as_str();
        if let Some(dir) = local_dir(config, data_dir) {
            return Ok(Self::Local(LocalObjects::open(dir).await?));
        }
        if url == "file:" {
            return Err(ObjectsError::Config("`file:` needs a path".into()));
        }
        if let Some(bucket) = url.strip_prefix("s3://") {
            let s3 = S3Objects::new(S3Settings {
                endpoint: config.endpoint.clone(),
                bucket: bucket.to_owned(),
                region: config.region.clone(),
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.clone(),
            })?;
            s3.ping().await?;
            return Ok(Self::S3(Box::new(s3)));
        }
        Err(ObjectsError::Config(format!(
            "unsupported objects.url {url:?}: expected file:PATH or s3://BUCKET"
        )))
    }

    /// The backend's name (`"local"` or `"s3"`), for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::S3(_) => "s3",
        }
    }
}

impl From<LocalObjects> for AnyObjects {
    fn from(objects: LocalObjects) -> Self {
        Self::Local(objects)
    }
}

impl From<S3Objects> for AnyObjects {
    fn from(objects: S3Objects) -> Self {
        Self::S3(Box::new(objects))
    }
}

impl ObjectStore for AnyObjects {
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<ObjectMeta> {
        match self {
            Self::Local(objects) => objects.put(key, bytes, content_type).await,
            Self::S3(objects) => objects.put(key, bytes, content_type).await,
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>> {
        match self {
            Self::Local(objects) => objects.get(key).await,
            Self::S3(objects) => objects.get(key).await,
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match self {
            Self::Local(objects) => objects.head(key).await,
            Self::S3(objects) => objects.head(key).await,
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self {
            Self::Local(objects) => objects.delete(key).await,
            Self::S3(objects) => objects.delete(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_choose_the_backend() {
        let dir = std::env::temp_dir().join(format!("strata-objects-{}", uuid::Uuid::new_v4()));
        let config = ObjectsConfig::default();
        let objects = AnyObjects::open(&config, &dir).await.unwrap();
        assert_eq!(objects.backend(), "local");
        assert!(dir.join("objects").is_dir());

        let config = ObjectsConfig {
            url: format!("file:{}", dir.join("elsewhere").display()),
            ..ObjectsConfig::default()
        };
        assert_eq!(
            AnyObjects::open(&config, &dir).await.unwrap().backend(),
            "local"
        );
        assert!(dir.join("elsewhere").is_dir());

        for url in ["memory", "file:", "s3://", "http://h/b"] {
            let config = ObjectsConfig {
                url: url.into(),
                endpoint: "http://127.0.0.1:1".into(),
                access_key_id: "id".into(),
                ..ObjectsConfig::default()
            };
            let err = AnyObjects::open(&config, &dir).await.unwrap_err();
            assert!(matches!(err, ObjectsError::Config(_)), "{url}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
