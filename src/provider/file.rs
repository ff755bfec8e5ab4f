//! The embedded default provider: a directory of manifests, watched for changes.
//!
//! Every `*.yaml` / `*.yml` file under the directory is read on each change (the set is small
//! and a full re-read cannot drift from the disk); each result is published on a channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{InvalidInput, Observed, manifests};

/// How long to wait for an editor's burst of writes and renames to settle before re-reading.
const SETTLE: Duration = Duration::from_millis(50);
/// The largest manifest file read (the API server's own limit for an object is 1.5 MB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why the directory cannot be served at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The manifest directory is missing or not a directory.
    #[error("manifest directory {path}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The operating system refused to watch the directory.
    #[error("cannot watch {path}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Reads every manifest under `dir`, in path order. Unreadable files are reported, not fatal.
pub fn load(dir: &Path) -> Result<Observed, FileError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files).map_err(|source| FileError::Directory {
        path: dir.to_path_buf(),
        source,
    })?;
    files.sort();
    let mut observed = Observed::default();
    for path in files {
        let origin = path.display().to_string();
        match read(&path) {
            Ok(text) => manifests::parse(&origin, &text, &mut observed),
            Err(reason) => observed.invalid.push(InvalidInput {
                origin,
                kind: "file".to_string(),
                object: None,
                reason,
            }),
        }
    }
    Ok(observed)
}

/// A manifest file's text, unless it is too large to be one (checked before reading it).
fn read(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|error| format!("cannot read: {error}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} a manifest file may have; not read"
        ));
    }
    std::fs::read_to_string(path).map_err(|error| format!("cannot read: {error}"))
}

/// [`load`] on a blocking thread: reading and parsing never hold up the async workers that
/// serve the proxies.
async fn load_blocking(dir: &Path) -> Result<Observed, FileError> {
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || load(&dir)).await {
        Ok(loaded) => loaded,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Publishes the directory's contents now and after every change, until `updates` is closed.
pub async fn watch(
    dir: PathBuf,
    updates: watch::Sender<Option<Observed>>,
) -> Result<(), FileError> {
    std::fs::read_dir(&dir).map_err(|source| FileError::Directory {
        path: dir.clone(),
        source,
    })?;
    let (events, mut changed) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = events.send(());
        }
    })
    .map_err(|source| FileError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| FileError::Watch {
            path: dir.clone(),
            source,
        })?;

    updates.send_replace(Some(load_blocking(&dir).await?));
    loop {
        tokio::select! {
            event = changed.recv() => if event.is_none() { return Ok(()) },
            () = updates.closed() => return Ok(()),
        }
        // Coalesce the burst of events a single save produces.
        while tokio::time::timeout(SETTLE, changed.recv())
            .await
            .is_ok_and(|e| e.is_some())
        {}
        match load_blocking(&dir).await {
            Ok(observed) => {
                updates.send_replace(Some(observed));
            }
            Err(error) => {
                tracing::error!(%error, "manifest directory unreadable; serving the last good configuration")
            }
        }
    }
}
