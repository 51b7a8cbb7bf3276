//! The object store contract on a local directory, directly and through `AnyObjects`; and what
//! only a directory can show: writes leave no temporary files, and keys stay inside it.

use std::path::PathBuf;

use strata_core::config::ObjectsConfig;
use strata_objects::{AnyObjects, Bytes, LocalObjects, ObjectKey, ObjectStore, contract};

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("strata-objects-test-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir`, as paths relative to it.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read the directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .expect("under the root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_objects_meet_the_contract_and_leave_nothing_behind() {
    let dir = TempDir::new();
    let objects = LocalObjects::open(&dir.0).await.unwrap();
    contract::run_all(&objects).await;
    // Every property deleted its objects, and no temporary file survived a write.
    assert_eq!(files(&dir.0), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_objects_from_a_file_url_meet_the_contract() {
    let dir = TempDir::new();
    let config = ObjectsConfig {
        url: format!("file:{}", dir.0.join("images").display()),
        ..ObjectsConfig::default()
    };
    let objects = AnyObjects::open(&config, &dir.0).await.unwrap();
    assert_eq!(objects.backend(), "local");
    contract::run_all(&objects).await;
}

#[tokio::test]
async fn objects_persist_as_files_under_the_root() {
    let dir = TempDir::new();
    let objects = LocalObjects::open(&dir.0).await.unwrap();
    let key = ObjectKey::new("products/7").unwrap();
    objects
        .put(&key, Bytes::from_static(b"<svg/>"), "image/svg+xml")
        .await
        .unwrap();
    assert_eq!(files(&dir.0), vec!["products/7~obj".to_owned()]);
    // A second handle on the same directory (a restart) reads it.
    let again = LocalObjects::open(&dir.0).await.unwrap();
    let object = again.get(&key).await.unwrap().unwrap();
    assert_eq!(&object.bytes[..], b"<svg/>");
    assert_eq!(object.meta.content_type, "image/svg+xml");
    // A file some other program left there is reported, not served.
    std::fs::write(dir.0.join("products/8~obj"), b"not ours").unwrap();
    let err = again
        .get(&ObjectKey::new("products/8").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, strata_objects::ObjectsError::Corrupt { .. }),
        "{err}"
    );
}
