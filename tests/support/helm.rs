//! helm, built from its Go module by `scripts/install-helm.sh`, rendering the project's chart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The chart in this repository.
pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/lattice-xds")
}

/// The helm binary (built on first use, then cached; asked for once per test binary).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-helm.sh");
        let output = Command::new(script).output().expect("run install-helm.sh");
        assert!(
            output.status.success(),
            "install-helm.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

/// Runs helm with `args`: success, and stdout followed by stderr.
pub fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run helm");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The chart rendered as release `lattice-xds` in namespace `lattice-xds` with `args` added,
/// one string per document.
pub fn template(args: &[&str]) -> Vec<String> {
    let chart = chart();
    let mut full = vec![
        "template",
        "lattice-xds",
        chart.to_str().unwrap(),
        "--namespace",
        "lattice-xds",
    ];
    full.extend(args);
    let (ok, text) = run(&full);
    assert!(ok, "helm template failed:\n{text}");
    text.split("\n---\n")
        .map(str::trim)
        .filter(|document| document.contains("kind:"))
        .map(str::to_string)
        .collect()
}

/// The chart's MutatingWebhookConfiguration, rendered with `args`.
pub fn webhook_configuration(args: &[&str]) -> String {
    template(args)
        .into_iter()
        .find(|document| document.contains("kind: MutatingWebhookConfiguration"))
        .expect("the chart renders a MutatingWebhookConfiguration")
}
