//! The servers under measurement: this project's controller on a manifest directory, and the
//! go-control-plane peer serving the very resources the controller served, loaded from files.
//! Each is a fresh process per measurement, on loopback, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// A server process and how to change what it serves.
pub struct Target {
    pub child: Child,
    pub xds: String,
    /// The controller's admin address; `None` for the peer.
    pub admin: Option<String>,
    trigger: Trigger,
}

enum Trigger {
    /// Write this route into the controller's manifest directory.
    Manifest { dir: PathBuf },
    /// Ask the peer to load this file.
    Load { control: String, file: PathBuf },
}

impl Target {
    /// Changes what the server serves: one destination is added.
    pub async fn trigger(&self) -> anyhow::Result<()> {
        match &self.trigger {
            Trigger::Manifest { dir } => {
                // Renamed into place, so the controller never reads a half-written file.
                let part = dir.join(".added.yaml.part");
                std::fs::write(&part, route("bench-added"))?;
                std::fs::rename(part, dir.join("added.yaml"))?;
            }
            Trigger::Load { control, file } => {
                let url = format!("http://{control}/load?file={}", file.display());
                let output = Command::new("curl")
                    .args(["-fsS", "-X", "POST", &url])
                    .output()
                    .await?;
                anyhow::ensure!(
                    output.status.success(),
                    "the peer refused {}: {}",
                    file.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        Ok(())
    }

    /// Snapshots the controller has published (`lattice_xds_snapshots_total`).
    pub async fn snapshots(&self) -> anyhow::Result<u64> {
        let value = self.metric("lattice_xds_snapshots_total").await?;
        Ok(value as u64)
    }

    /// One sample of the controller's metrics: `name` with its labels as exported.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let admin = self
            .admin
            .as_ref()
            .context("only the controller exports metrics")?;
        let output = Command::new("curl")
            .args(["-fsS", &format!("http://{admin}/metrics")])
            .output()
            .await?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no {name}"))
    }

    /// The server's resident memory, in bytes.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server exited")
    }

    pub fn rss(&self) -> anyhow::Result<u64> {
        lattice_xds::loadtest::rss_bytes(self.child.id().context("the server exited")?)
    }

    /// CPU seconds the server has used (user and system).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        lattice_xds::loadtest::cpu_seconds(self.child.id().context("the server exited")?)
    }
}

/// One HTTPRoute on the walkthrough's gateway, with a custom domain `<name>.example.com`.
pub fn route(name: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  \
         namespace: apps\nspec:\n  hostnames:\n  - {name}.example.com\n  parentRefs:\n  \
         - name: lattice-gateway\n    namespace: lattice-gateway\n    \
         sectionName: https-listener-with-custom-domain\n"
    )
}

/// Routes per manifest file: the controller refuses files over 4 MiB, as hostile input.
const ROUTES_PER_FILE: usize = 5_000;

/// A manifest directory of `routes` HTTPRoutes, in files of at most [`ROUTES_PER_FILE`].
pub fn manifests(dir: &Path, routes: usize) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::copy("examples/cluster1/gateway.yaml", dir.join("gateway.yaml"))?;
    for (file, first) in (0..routes).step_by(ROUTES_PER_FILE).enumerate() {
        let last = (first + ROUTES_PER_FILE).min(routes);
        let text: String = (first..last).map(|n| route(&format!("svc-{n}"))).collect();
        std::fs::write(dir.join(format!("routes-{file}.yaml")), text)?;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the controller on `manifests` and waits until it serves a snapshot.
/// The controller on `manifests`; `on_demand` serves incremental streams virtual hosts on
/// demand.
pub async fn controller(manifests: &Path, logs: &Path, on_demand: bool) -> anyhow::Result<Target> {
    let (xds, admin) = (free_port()?, free_port()?);
    let log = std::fs::File::create(logs.join("controller.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_lattice-xds"))
        .arg("controller")
        .arg(format!("--manifests={}", manifests.display()))
        .arg(format!("--xds-listen=127.0.0.1:{xds}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin}"))
        .args([
            "--domain=example.com",
            "--signing=native",
            "--region=us-west-2",
        ])
        .args(["--egress-address=127.0.0.1", "--log=warn"])
        // Changes are served as soon as they are read, as the peer serves a file once loaded.
        .args(["--xds-max-subscriptions=100000", "--debounce-ms=0"])
        .arg(format!("--on-demand-hosts={on_demand}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    wait_until("the controller to be ready", || async {
        let output = Command::new("curl").args(["-fsS", &ready]).output().await;
        output.is_ok_and(|output| output.status.success())
    })
    .await?;
    Ok(Target {
        child,
        xds: format!("127.0.0.1:{xds}"),
        admin: Some(format!("127.0.0.1:{admin}")),
        trigger: Trigger::Manifest {
            dir: manifests.to_path_buf(),
        },
    })
}

/// Starts the go-control-plane peer serving `initial`; its trigger loads `next`.
pub async fn peer(binary: &Path, initial: &Path, next: &Path) -> anyhow::Result<Target> {
    let mut child = Command::new(binary)
        .args(["-listen", "127.0.0.1:0", "-control", "127.0.0.1:0"])
        .arg("-resources")
        .arg(initial)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the peer did not start")??
        .context("the peer exited")?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .map(str::to_string)
            .with_context(|| format!("no {key} in {line:?}"))
    };
    Ok(Target {
        xds: field("ads=")?,
        admin: None,
        trigger: Trigger::Load {
            control: field("control=")?,
            file: next.to_path_buf(),
        },
        child,
    })
}

/// Polls `check` every 50 ms until it holds, for at most two minutes.
pub async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}
