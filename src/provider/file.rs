//! The embedded default provider: a directory of manifests, watched for changes.
//!
//! Every `*.yaml` / `*.yml` file under the directory is listed on each change, and read again
//! only when its identity, size or times differ from when it was last read: an edit of one file
//! out of many costs the parsing of that one. Each result is published on a channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    Reader::default().load(dir).map(|(observed, _)| observed)
}

/// The manifests read so far, by file, each with the stamp its file had when it was read.
#[derive(Debug, Default)]
pub struct Reader {
    files: BTreeMap<PathBuf, (Option<Stamp>, Observed)>,
}

/// What differs whenever a file's content may: its device and inode (a rename over it), its
/// size, and its modification and change times, to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of the file `path` names (through a symlink); `None` when it cannot be read.
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }
}

impl Reader {
    /// Every manifest under `dir`, in path order, reading again only the files whose stamp
    /// changed since the last call, and how many files were read. A file without a stamp is
    /// always read. Unreadable files are reported, not fatal.
    pub fn load(&mut self, dir: &Path) -> Result<(Observed, usize), FileError> {
        let mut paths = Vec::new();
        collect_files(dir, &mut paths).map_err(|source| FileError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        paths.sort();
        let mut files = BTreeMap::new();
        let mut read = 0;
        for path in paths {
            // Taken before the read: a write during it changes the stamp, and the next load
            // reads the file again.
            let stamp = Stamp::of(&path);
            let part = match self.files.remove(&path) {
                Some((Some(before), part)) if Some(before) == stamp => part,
                _ => {
                    read += 1;
                    read_file(&path)
                }
            };
            files.insert(path, (stamp, part));
        }
        self.files = files;
        let mut observed = Observed::default();
        for (_, part) in self.files.values() {
            observed.append(part);
        }
        Ok((observed, read))
    }
}

/// The objects of one manifest file, or why it could not be read.
fn read_file(path: &Path) -> Observed {
    let origin = path.display().to_string();
    let mut observed = Observed::default();
    match read(path) {
        Ok(text) => manifests::parse(&origin, &text, &mut observed),
        Err(reason) => observed.invalid.push(InvalidInput {
            origin,
            kind: "file".to_string(),
            object: None,
            reason,
        }),
    }
    observed
}

/// A manifest file's text: a regular file (a symlink to one is fine), at most
/// [`MAX_FILE_BYTES`]. Anything else (a device, a FIFO, a socket) is refused without waiting
/// on it or reading it: the file is opened without blocking and checked as opened.
fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |error: std::io::Error| format!("cannot read: {error}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err("not a regular file; not read".to_string());
    }
    let size = metadata.len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} a manifest file may have; not read"
        ));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "grew past the {MAX_FILE_BYTES} bytes a manifest file may have while it was read; not read"
        ));
    }
    Ok(text)
}

/// [`Reader::load`] on a blocking thread: reading and parsing never hold up the async workers
/// that serve the proxies.
async fn load_blocking(reader: &mut Reader, dir: &Path) -> Result<Observed, FileError> {
    let dir = dir.to_path_buf();
    let mut moved = std::mem::take(reader);
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = moved.load(&dir);
        (moved, loaded)
    });
    match loaded.await {
        Ok((back, loaded)) => {
            *reader = back;
            let (observed, read) = loaded?;
            tracing::debug!(files_read = read, elapsed = ?started.elapsed(), "manifests loaded");
            Ok(observed)
        }
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
    updates: watch::Sender<Option<Arc<Observed>>>,
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

    let mut reader = Reader::default();
    let observed = load_blocking(&mut reader, &dir).await?;
    updates.send_replace(Some(Arc::new(observed)));
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
        match load_blocking(&mut reader, &dir).await {
            Ok(observed) => {
                updates.send_replace(Some(Arc::new(observed)));
            }
            Err(error) => {
                tracing::error!(%error, "manifest directory unreadable; serving the last good configuration")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink to an endless device and a FIFO nobody writes are refused at once; the rest
    /// of the directory is read.
    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = std::fs::read_to_string("examples/cluster1/gateway.yaml").unwrap();
        std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        let fifo = dir.path().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");

        let (sender, receiver) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = sender.send(load(&path));
        });
        let observed = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("load returned within 10 s")
            .unwrap();
        assert_eq!(observed.inputs.gateways.len(), 1);
        let refused: Vec<(&str, &str)> = (observed.invalid.iter())
            .map(|invalid| (invalid.origin.as_str(), invalid.reason.as_str()))
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        for (origin, reason) in refused {
            assert!(
                origin.ends_with("zero.yaml") || origin.ends_with("fifo.yaml"),
                "{origin}"
            );
            assert_eq!(reason, "not a regular file; not read");
        }
    }

    /// An edit of one file out of three reads that one again; a removed file's objects go.
    #[test]
    fn only_changed_files_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let route = |name: &str, host: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  hostnames: [{host}]\n"
            )
        };
        for name in ["a", "b", "c"] {
            let text = route(name, &format!("{name}.example.com"));
            std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
        }
        let mut reader = Reader::default();
        let hosts = |observed: &Observed| -> Vec<String> {
            (observed.inputs.routes.iter())
                .flat_map(|route| route.object.spec.hostnames.clone().unwrap_or_default())
                .collect()
        };

        let (observed, read) = reader.load(dir.path()).unwrap();
        assert_eq!(read, 3);
        assert_eq!(
            hosts(&observed),
            ["a.example.com", "b.example.com", "c.example.com"]
        );
        let (_, read) = reader.load(dir.path()).unwrap();
        assert_eq!(read, 0, "nothing changed");

        let b = dir.path().join("b.yaml");
        std::fs::write(&b, route("b", "billing.example.com")).unwrap();
        let (observed, read) = reader.load(dir.path()).unwrap();
        assert_eq!(read, 1);
        assert_eq!(
            hosts(&observed),
            ["a.example.com", "billing.example.com", "c.example.com"]
        );

        // Replaced by a rename, as editors and ConfigMap mounts do.
        let staged = dir.path().join("c.staged");
        std::fs::write(&staged, route("c", "cart.example.com")).unwrap();
        std::fs::rename(&staged, dir.path().join("c.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let (observed, read) = reader.load(dir.path()).unwrap();
        assert_eq!(read, 1);
        assert_eq!(
            hosts(&observed),
            ["billing.example.com", "cart.example.com"]
        );
    }
}
