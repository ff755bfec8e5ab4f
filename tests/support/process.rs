//! Child processes that die with their handle, and the controller started with free ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{eventually, free_port, http, lattice_xds};

/// A child process killed on drop; its stderr goes to a log file kept for failures.
pub struct Running {
    child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn spawn(command: &mut Command, log: &Path) -> Running {
        // Both streams in one file: Envoy writes its access log on stdout.
        let file = std::fs::File::create(log).expect("create log file");
        let stdout = file.try_clone().expect("share the log file");
        let child = command
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Running {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's log so far, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's resident memory in KiB (`VmRSS`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
    }

    /// Waits for the exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for exit")
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("check for exit")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- last lines of {}:\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A controller on free loopback ports.
pub struct Controller {
    pub process: Running,
    pub xds_port: u16,
    pub admin_port: u16,
}

impl Controller {
    /// Starts `lattice-xds controller` with `args` and waits until `/readyz` answers 200.
    pub async fn start(workdir: &Path, args: &[String]) -> Controller {
        Self::start_on(workdir, free_port(), free_port(), "controller", args, &[]).await
    }

    /// The same on given ports (a restart that the connected Envoys follow), logging to
    /// `<name>.log`.
    pub async fn start_on(
        workdir: &Path,
        xds_port: u16,
        admin_port: u16,
        name: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> Controller {
        let mut command = Command::new(lattice_xds());
        command
            .arg("controller")
            .arg(format!("--xds-listen=127.0.0.1:{xds_port}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
            .args(args)
            .env("LATTICE_XDS_LOG", "info,lattice_xds=debug");
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Running::spawn(&mut command, &workdir.join(format!("{name}.log")));
        let controller = Controller {
            process,
            xds_port,
            admin_port,
        };
        let url = controller.admin_url("/readyz");
        eventually(
            "the controller to be ready",
            Duration::from_secs(20),
            || async { http::get_url(&url).await.filter(|r| r.status == 200) },
        )
        .await;
        controller
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// `/debug/proxies` as JSON.
    pub async fn proxies(&self) -> serde_json::Value {
        let response = http::get_url(&self.admin_url("/debug/proxies"))
            .await
            .expect("proxies");
        serde_json::from_str(&response.body).expect("proxies JSON")
    }

    /// Waits until the controller serves snapshot `version` (or a later one).
    pub async fn wait_for_snapshot(&self, version: u64) {
        let url = self.admin_url("/readyz");
        super::eventually(
            &format!("snapshot {version}"),
            std::time::Duration::from_secs(20),
            || async {
                let body = http::get_url(&url).await?.body;
                let served: u64 = body
                    .split("snapshot ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                (served >= version).then_some(())
            },
        )
        .await;
    }

    /// Waits until `node` has accepted every one of `types` at the version it was sent.
    pub async fn wait_synced(&self, node: &str, types: &[&str]) {
        super::eventually(
            &format!("{node} to accept its configuration"),
            std::time::Duration::from_secs(20),
            || async { synced(&self.proxies().await, node, types).then_some(()) },
        )
        .await;
    }

    pub async fn metrics(&self) -> String {
        http::get_url(&self.admin_url("/metrics"))
            .await
            .expect("metrics")
            .body
    }
}

/// The status of one type of one node in `/debug/proxies`, if the node is connected.
pub fn type_status<'a>(
    proxies: &'a serde_json::Value,
    node: &str,
    short: &str,
) -> Option<&'a serde_json::Value> {
    let proxy = proxies["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == node)?;
    proxy["types"].as_array()?.iter().find(|t| {
        t["type_url"]
            .as_str()
            .is_some_and(|u| type_short(u) == short)
    })
}

fn type_short(type_url: &str) -> &str {
    match type_url.rsplit('.').next().unwrap_or_default() {
        "Cluster" => "CDS",
        "Listener" => "LDS",
        "RouteConfiguration" => "RDS",
        "Secret" => "SDS",
        "VirtualHost" => "VHDS",
        other => other,
    }
}

/// True when every one of `types` is acked at the version sent, with no rejection.
pub fn synced(proxies: &serde_json::Value, node: &str, types: &[&str]) -> bool {
    types.iter().all(|short| {
        type_status(proxies, node, short).is_some_and(|status| {
            let sent = &status["sent_version"];
            sent == &status["acked_version"] && status["nacked_version"] == "" && sent != ""
        })
    })
}
