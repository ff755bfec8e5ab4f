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
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("lattice-xds-test-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// A namespace with loopback up and a stand-in for VPC Lattice on it: one address of its
    /// IPv4 range, 169.254.171.20. Needs root.
    fn with_lattice_address() -> Netns {
        assert_eq!(
            run(&["id", "-u"]).trim(),
            "0",
            "this test makes a network namespace and installs iptables rules: run it as root"
        );
        let netns = Netns::create();
        netns.exec(&["ip", "link", "set", "lo", "up"]);
        netns.exec(&["ip", "addr", "add", "169.254.171.20/32", "dev", "lo"]);
        netns
    }

    /// `lattice-xds redirect` as the init container runs it: the proxy's uid exempt. Its output.
    fn redirect(&self) -> String {
        self.exec(&[
            lattice_xds(),
            "redirect",
            "--egress-port",
            EGRESS_PORT,
            "--proxy-uid",
            PROXY_UID,
            "--proxy-gid",
            PROXY_UID,
        ])
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
    let netns = Netns::with_lattice_address();
    // And one in its IPv6 range.
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

    let rules = netns.redirect();
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

/// Every protocol passes a sidecar that the redirect hands it to: stock Envoy, following the
/// controller, as the proxy's uid in a network namespace with the injected rules. HTTP is the
/// connection manager's; TLS, a client-first and a server-first protocol go on untouched to the
/// Lattice address the application dialed; a TLS connection keeps its SNI and the service's
/// own certificate; nothing made directly to the egress port is forwarded.
#[tokio::test]
async fn every_protocol_the_redirect_captures_passes_the_sidecar() {
    let netns = Netns::with_lattice_address();
    let dir = tempfile::tempdir().unwrap();
    // Envoy runs as the proxy's uid: its binary and bootstrap must be readable by it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cert = support::upstream::ServerCert::write(dir.path(), "lattice", &["tls.example.com"]);

    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let (xds_port, admin_port) = (18000, 19000);
    let controller = Running::spawn(
        &mut netns.command(&[
            lattice_xds(),
            "controller",
            &format!("--manifests={}", manifests.display()),
            "--signing=none",
            &format!("--egress-port={EGRESS_PORT}"),
            &format!("--xds-listen=127.0.0.1:{xds_port}"),
            &format!("--admin-listen=127.0.0.1:{admin_port}"),
        ]),
        &dir.path().join("controller.log"),
    );
    let envoy_admin = 19001;
    let bootstrap =
        support::envoy::write_bootstrap(dir.path(), "pod", xds_port, envoy_admin, "delta");
    let envoy_binary = dir.path().join("envoy");
    std::fs::copy(support::envoy::binary(), &envoy_binary).unwrap();
    std::fs::set_permissions(
        dir.path().join("bootstrap-pod.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let _envoy = Running::spawn(
        &mut netns.command(&[
            "setpriv",
            "--reuid",
            PROXY_UID,
            "--regid",
            PROXY_UID,
            "--clear-groups",
            envoy_binary.to_str().unwrap(),
            "-c",
            bootstrap.to_str().unwrap(),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            // Access log lines within 200 ms, for the check below.
            "--file-flush-interval-msec",
            "200",
        ]),
        &dir.path().join("envoy.log"),
    );
    let lattice = Running::spawn(
        &mut netns.command(&[
            PYTHON,
            &peer("passthrough.py"),
            "serve",
            "169.254.171.20",
            cert.cert_file.to_str().unwrap(),
            cert.key_file.to_str().unwrap(),
        ]),
        &dir.path().join("lattice.log"),
    );
    let peer_run = |args: &[&str]| {
        let script = peer("passthrough.py");
        let mut full = vec![PYTHON, script.as_str()];
        full.extend(args);
        netns.exec(&full).trim().to_string()
    };
    let listeners = format!("http://127.0.0.1:{envoy_admin}/listeners");
    eventually(
        "Envoy's egress listener",
        Duration::from_secs(30),
        || async {
            peer_run(&["url", &listeners])
                .contains("egress")
                .then_some(())
        },
    )
    .await;
    eventually("the Lattice stand-ins", Duration::from_secs(10), || async {
        lattice.log_text().contains("ready").then_some(())
    })
    .await;
    let rules = netns.redirect();
    assert!(rules.is_empty(), "{rules}");

    // TLS that the service terminates: the client sees the service's own certificate (checked
    // against its CA for the name it asked), and the service sees that name.
    let tls = peer_run(&[
        "tls",
        "169.254.171.20",
        "8443",
        "tls.example.com",
        cert.ca_file.to_str().unwrap(),
    ]);
    assert_eq!(tls, "tls tls.example.com");
    // A protocol whose client speaks first, and one whose server does (after the inspection
    // timeout).
    assert_eq!(peer_run(&["echo", "169.254.171.20", "7000"]), "echo hello");
    let started = std::time::Instant::now();
    let connect = peer("connect.py");
    assert_eq!(
        netns
            .exec(&[PYTHON, &connect, "169.254.171.20", "7001"])
            .trim(),
        "greeting"
    );
    eprintln!(
        "server-first protocol answered after {:?}",
        started.elapsed()
    );
    // They went through the sidecar (its access log has them), not around it.
    eventually(
        "the pass-through log lines",
        Duration::from_secs(5),
        || async {
            let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
            let lines: Vec<serde_json::Value> = log
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .filter(|line: &serde_json::Value| {
                    line["route"] == lattice_xds::translate::PASSTHROUGH
                })
                .collect();
            let tls_logged = lines.iter().any(|line| {
                line["server_name"] == "tls.example.com"
                    && line["destination"] == "169.254.171.20:8443"
            });
            (tls_logged && lines.len() >= 3).then_some(())
        },
    )
    .await;
    // A connection made to the egress port itself has nowhere to go but back: it is told so and
    // closed (the line may be lost to a reset, as the client's bytes are left unread), never
    // passed on.
    let started = std::time::Instant::now();
    let direct = peer_run(&["echo", "127.0.0.1", EGRESS_PORT]);
    assert!(
        direct == lattice_xds::translate::NOT_REDIRECTED.trim() || direct.contains("reset"),
        "{direct}\n{}",
        controller.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
