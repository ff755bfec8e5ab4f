//! The injected init container's redirect rules, applied by `lattice-xds redirect` inside a
//! network namespace made for the test: a connection to VPC Lattice's IPv4 or IPv6 range lands
//! on the sidecar's egress port, while the same connection made as the proxy's uid reaches the
//! Lattice address itself (the sidecar's own traffic is never captured). Needs root and
//! iptables (installed by `scripts/install-iptables.sh`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::process::Running;
use support::{eventually, lattice_xds};

const PROXY_UID: &str = "4242";
/// The system's Python: an unprivileged uid cannot run an interpreter under /root.
const PYTHON: &str = "/usr/bin/python3";
const EGRESS_PORT: &str = "15001";

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("lattice-xds-test-{}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// `ip netns exec <ns> args...`, asserting success; its output.
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend(args);
        run(&full)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0]).args(args);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn peer(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test]
async fn lattice_connections_land_on_the_egress_port_except_the_proxys_own() {
    assert_eq!(
        run(&["id", "-u"]).trim(),
        "0",
        "this test makes a network namespace and installs iptables rules: run it as root"
    );
    let netns = Netns::create();
    netns.exec(&["ip", "link", "set", "lo", "up"]);
    // Stand-ins for Lattice: one address in each of its ranges, local to this namespace.
    netns.exec(&["ip", "addr", "add", "169.254.171.20/32", "dev", "lo"]);
    netns.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:ec2:80::20/128",
        "dev",
        "lo",
        "nodad",
    ]);

    let rules = netns.exec(&[
        lattice_xds(),
        "redirect",
        "--egress-port",
        EGRESS_PORT,
        "--proxy-uid",
        PROXY_UID,
        "--proxy-gid",
        PROXY_UID,
    ]);
    assert!(rules.is_empty(), "{rules}");
    let installed = netns.exec(&["iptables-save", "-t", "nat"]);
    assert!(
        installed.contains("-A OUTPUT -d 169.254.171.0/24 -p tcp -j LATTICE_XDS_REDIRECT"),
        "{installed}"
    );

    let dir = tempfile::tempdir().unwrap();
    let listeners = Running::spawn(
        &mut netns.command(&[
            PYTHON,
            &peer("redirect_listeners.py"),
            "--egress-port",
            EGRESS_PORT,
            "--lattice",
            "169.254.171.20:443",
            "--lattice",
            "[fd00:ec2:80::20]:443",
        ]),
        &dir.path().join("listeners.log"),
    );
    eventually("the listeners", Duration::from_secs(10), || async {
        listeners.log_text().contains("ready").then_some(())
    })
    .await;

    let connect = |uid: Option<&str>, address: &str| {
        let script = peer("connect.py");
        let mut args: Vec<&str> = Vec::new();
        if let Some(uid) = uid {
            args.extend(["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"]);
        }
        args.extend([PYTHON, &script, address, "443"]);
        netns.exec(&args).trim().to_string()
    };
    // The application's connections are captured, over IPv4 and IPv6.
    assert_eq!(connect(None, "169.254.171.20"), "egress");
    assert_eq!(connect(None, "fd00:ec2:80::20"), "egress");
    assert_eq!(connect(Some("1000"), "169.254.171.20"), "egress");
    // The proxy's are not: they reach Lattice.
    assert_eq!(connect(Some(PROXY_UID), "169.254.171.20"), "lattice");
    assert_eq!(connect(Some(PROXY_UID), "fd00:ec2:80::20"), "lattice");
}
