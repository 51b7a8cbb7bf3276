//! [`LocalObjects`]: objects as files under one directory, for one instance (or several
//! processes on one machine). Several machines need the S3 backend: a directory is not shared.
//!
//! A file holds a short text header (format, content type, tag) and then the bytes, so an
//! object and its metadata are replaced together by one rename. Writes go to a temporary
//! file in the root (`.tmp-<uuid>`, a name no key can have), are flushed to disk, then
//! renamed over the old file: a reader opens either the old file or the new one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    Object, ObjectKey, ObjectMeta, ObjectStore, ObjectsError, Result, checked_content_type, etag_of,
};

/// Appended to a key to name its file: no key contains `~`, so a file never has the name of a
/// directory another key needs (`a/b` and `a/b/c` are both objects, as on S3).
const FILE_SUFFIX: &str = "~obj";
/// The first line of every object file.
const MAGIC: &str = "strata-object 1\n";
/// The longest header: the magic line, a content type, a tag and their labels.
const MAX_HEADER_BYTES: usize = 512;

/// Objects stored as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    /// Opens (and creates, with its parents) the directory `root`.
    ///
    /// # Errors
    /// [`ObjectsError::Io`] when it cannot be created.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        tokio::fs::create_dir_all(&root).await?;
        Ok(Self { root })
    }

    /// The directory objects live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // A valid key has no `..`, no leading `/` and no `.` segment: it stays under the root.
        self.root.join(format!("{}{FILE_SUFFIX}", key.as_str()))
    }
}

/// The header of an object file.
fn header(meta: &ObjectMeta) -> String {
    format!(
        "{MAGIC}content-type: {}\netag: {}\n\n",
        meta.content_type, meta.etag
    )
}

/// Splits an object file (or its first [`MAX_HEADER_BYTES`]) into metadata, the header's
/// length, and the size given by `file_len`.
fn parse_header(key: &ObjectKey, start: &[u8], file_len: u64) -> Result<(ObjectMeta, usize)> {
    let corrupt = |reason| ObjectsError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let end = start
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| corrupt("no header"))?;
    let text = std::str::from_utf8(&start[..end]).map_err(|_| corrupt("header not UTF-8"))?;
    let rest = text
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt("not a strata object file"))?;
    let mut content_type = None;
    let mut etag = None;
    for line in rest.lines() {
        if let Some(value) = line.strip_prefix("content-type: ") {
            content_type = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("etag: ") {
            etag = Some(value.to_owned());
        }
    }
    let header_len = end + 2;
    let size = file_len
        .checked_sub(header_len as u64)
        .ok_or_else(|| corrupt("shorter than its header"))?;
    Ok((
        ObjectMeta {
            content_type: content_type.ok_or_else(|| corrupt("no content type"))?,
            etag: etag.ok_or_else(|| corrupt("no tag"))?,
            size,
        },
        header_len,
    ))
}

/// `Ok(None)` for a missing file (or a missing directory on its path).
fn absent<T>(e: std::io::Error) -> Result<Option<T>> {
    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) {
        Ok(None)
    } else {
        Err(e.into())
    }
}

impl ObjectStore for LocalObjects {
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<ObjectMeta> {
        let meta = ObjectMeta {
            content_type: checked_content_type(content_type)?.to_owned(),
            etag: etag_of(&bytes),
            size: bytes.len() as u64,
        };
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temp = self
            .root
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            file.write_all(header(&meta).as_bytes()).await?;
            file.write_all(&bytes).await?;
            // On disk before the rename, so a crash never leaves a renamed, empty file.
            file.sync_all().await?;
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if let Err(e) = written {
            // Best effort: the temporary file is garbage either way.
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e.into());
        }
        Ok(meta)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>> {
        let data = match tokio::fs::read(self.path(key)).await {
            Ok(data) => data,
            Err(e) => return absent(e),
        };
        let start = &data[..data.len().min(MAX_HEADER_BYTES)];
        let (meta, header_len) = parse_header(key, start, data.len() as u64)?;
        let bytes = Bytes::from(data).slice(header_len..);
        Ok(Some(Object { meta, bytes }))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let mut file = match tokio::fs::File::open(self.path(key)).await {
            Ok(file) => file,
            Err(e) => return absent(e),
        };
        let file_len = file.metadata().await?.len();
        let mut start = Vec::with_capacity(MAX_HEADER_BYTES);
        (&mut file)
            .take(MAX_HEADER_BYTES as u64)
            .read_to_end(&mut start)
            .await?;
        Ok(Some(parse_header(key, &start, file_len)?.0))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) => absent::<()>(e).map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_roundtrip_and_foreign_files_are_corrupt() {
        let key = ObjectKey::new("k").unwrap();
        let meta = ObjectMeta {
            content_type: "image/png".into(),
            etag: etag_of(b"xyz"),
            size: 3,
        };
        let mut file = header(&meta).into_bytes();
        file.extend_from_slice(b"xyz");
        let (parsed, len) = parse_header(&key, &file, file.len() as u64).unwrap();
        assert_eq!(parsed, meta);
        assert_eq!(&file[len..], b"xyz");
        for foreign in [
            &b"hello"[..],
            b"other 1\n\n",
            b"strata-object 1\netag: x\n\n",
        ] {
            assert!(
                matches!(
                    parse_header(&key, foreign, foreign.len() as u64),
                    Err(ObjectsError::Corrupt { .. })
                ),
                "{foreign:?}"
            );
        }
    }
}
