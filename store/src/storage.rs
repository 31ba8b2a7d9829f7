//! The storage port for flow code: packages stored under a key, fetched back by the URL
//! the store returned. Two real implementations: S3 (the `stratus-aws` crate, `s3://`
//! URLs) and a local folder (`file://` URLs) for the zero-configuration local mode.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// Why storing or fetching failed; `transient` when the store could not be reached (or
/// answered that it is overloaded), so that trying again later may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    pub message: String,
    pub transient: bool,
}

impl StorageError {
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            transient: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            transient: true,
        }
    }
}

/// Runs `attempt` until it succeeds or fails for good, waiting between tries while the
/// store is unreachable (1 s, doubling up to `max_wait`) for at most `patience` in all;
/// `waiting` hears each transient failure and the wait before the next try.
pub async fn retry_transient<T, F, Fut>(
    patience: std::time::Duration,
    max_wait: std::time::Duration,
    mut attempt: F,
    waiting: impl Fn(&StorageError, std::time::Duration),
) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let started = tokio::time::Instant::now();
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match attempt().await {
            Err(e) if e.transient && started.elapsed() + wait < patience => {
                waiting(&e, wait);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(max_wait);
            }
            done => return done,
        }
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

pub trait Storage: Send + Sync {
    /// Stores `bytes` under `key` (overwriting) and returns the URL that fetches them.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StorageFuture<'a, String>;
    /// Fetches what a URL of this store names.
    fn get<'a>(&'a self, url: &'a str) -> StorageFuture<'a, Vec<u8>>;
}

/// A folder on this machine; URLs are `file://` URLs of absolute paths.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    dir: PathBuf,
}

impl LocalStorage {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStorage { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The path a `file://` URL names.
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("file://")?;
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// Keys are relative paths of plain segments: nothing may escape the store's folder.
fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::new(format!("invalid storage key {key:?}")))
    }
}

impl Storage for LocalStorage {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StorageFuture<'a, String> {
        Box::pin(async move {
            check_key(key)?;
            let dir = std::path::absolute(&self.dir)
                .map_err(|e| StorageError::new(format!("{}: {e}", self.dir.display())))?;
            let path = dir.join(key);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| StorageError::new(format!("cannot create {}: {e}", parent.display())))?;
            }
            // Write then rename, so a reader never sees half a package.
            let tmp = path.with_extension(format!("part-{}", uuid::Uuid::new_v4()));
            tokio::fs::write(&tmp, bytes)
                .await
                .map_err(|e| StorageError::new(format!("cannot write {}: {e}", tmp.display())))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| StorageError::new(format!("cannot write {}: {e}", path.display())))?;
            Ok(format!("file://{}", path.display()))
        })
    }

    fn get<'a>(&'a self, url: &'a str) -> StorageFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let path =
                file_url_path(url).ok_or_else(|| StorageError::new(format!("not a file:// URL: {url}")))?;
            tokio::fs::read(&path)
                .await
                .map_err(|e| StorageError::new(format!("cannot read {}: {e}", path.display())))
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn transient_failures_are_retried_within_the_patience_and_others_are_not() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;
        let tries = AtomicU32::new(0);
        let waited = AtomicU32::new(0);
        let flaky = || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 => Err(StorageError::transient("unreachable")),
                _ => Ok("stored"),
            }
        };
        let waiting = |_: &StorageError, _: Duration| {
            waited.fetch_add(1, Ordering::SeqCst);
        };
        let ten = Duration::from_secs(10);
        assert_eq!(retry_transient(ten, ten, flaky, &waiting).await, Ok("stored"));
        assert_eq!(
            (tries.load(Ordering::SeqCst), waited.load(Ordering::SeqCst)),
            (2, 1)
        );
        // A failure for good is not retried, nor one past the patience.
        let refused = || async { Err::<(), _>(StorageError::new("no such key")) };
        assert!(
            !retry_transient(ten, ten, refused, &waiting)
                .await
                .unwrap_err()
                .transient
        );
        let away = || async { Err::<(), _>(StorageError::transient("unreachable")) };
        assert!(
            retry_transient(Duration::ZERO, ten, away, &waiting)
                .await
                .unwrap_err()
                .transient
        );
        assert_eq!(waited.load(Ordering::SeqCst), 1);
    }

    use super::*;

    #[test]
    fn keys_cannot_escape() {
        assert!(check_key("flows/abc.tar.gz").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn local_round_trip() {
        let dir = std::env::temp_dir().join(format!("stratus-storage-{}", uuid::Uuid::new_v4()));
        let store = LocalStorage::new(&dir);
        let url = store.put("flows/x.tar.gz", b"hello".to_vec()).await.unwrap();
        assert!(url.starts_with("file:///"), "{url}");
        assert_eq!(store.get(&url).await.unwrap(), b"hello");
        assert!(store.get("s3://b/k").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
