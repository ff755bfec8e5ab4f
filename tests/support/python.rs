//! The Python test peers (botocore), installed by `scripts/install-python-peers.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The peers' Python: `LATTICE_XDS_PYTHON`, or the virtual environment the script makes.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("LATTICE_XDS_PYTHON") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").expect("HOME");
    let cache = std::env::var("LATTICE_XDS_CACHE").unwrap_or(format!("{home}/.cache/lattice-xds"));
    let path = PathBuf::from(cache).join("python-peers/bin/python");
    assert!(
        path.exists(),
        "the Python test peers are not installed at {}: run scripts/install-python-peers.sh \
         (make test does)",
        path.display()
    );
    path
}

/// A peer script under `tests/peers/`.
pub fn peer(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Runs a peer script with `input` on stdin and returns its stdout; panics with its stderr.
pub fn run(script: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(binary())
        .arg(peer(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python peer");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
