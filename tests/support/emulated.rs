//! One service behind the local VPC Lattice emulator, called from a pod's sidecar that signs
//! with ext_proc: the emulator (its own certificate for `*.example.com`, one known caller, any
//! `--fault` flags), a backend that answers with the trace context it received, the signer
//! holding the caller's keys, the controller and stock Envoy.

use std::net::SocketAddr;
use std::time::Duration;

use super::envoy::Envoy;
use super::process::{Controller, Running};
use super::signing::{Signer, isolate_aws};
use super::upstream::ServerCert;
use super::{eventually, free_port, http, lattice_xds};

/// The service's host name.
pub const HOST: &str = "orders.example.com";
/// A second service, whose auth policy lets no one in.
pub const PRIVATE_HOST: &str = "private.example.com";
/// A third, whose route asks for its own retries: three, of any method, on a 503.
pub const RETRIED_HOST: &str = "retried.example.com";
pub const REGION: &str = "us-east-1";

const GATEWAY: &str = include_str!("../../examples/cluster1/gateway.yaml");

/// An HTTPRoute of `apps` for `host`, on the custom domain's listener, to the one backend.
/// `rule` is more of the rule's fields, each line indented by four spaces.
fn route(name: &str, host: &str, rule: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [{host}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n  rules:\n  - backendRefs:\n    - name: orders-v1\n      port: 80\n{rule}"
    )
}

/// What lets no one call [`PRIVATE_HOST`].
const PRIVATE_POLICY: &str = "apiVersion: application-networking.k8s.aws/v1alpha1
kind: IAMAuthPolicy
metadata:
  name: private-policy
  namespace: apps
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: HTTPRoute
    namespace: apps
    name: private
  policy: |
    {\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"vpc-lattice-svcs:Invoke\", \"Resource\": \"*\"}]}
";
const KEY: &str = "ASIAEMULATEDORDERS01";
const SECRET: &str = "orders-caller-secret-000000000000000000000";
const TOKEN: &str = "orders-caller-session-token";
const IDENTITIES: &str = "- name: eks-cluster1/apps/caller
  accessKeyId: ASIAEMULATEDORDERS01
  secretAccessKey: orders-caller-secret-000000000000000000000
  sessionToken: orders-caller-session-token
  arn: arn:aws:sts::111122223333:assumed-role/caller/eks-eks-cluster1-caller-0000
  tags: {eks-cluster-name: eks-cluster1, kubernetes-namespace: apps}
";

pub struct Lattice {
    /// The pod's egress address: plain HTTP, routed by Host.
    pub egress: SocketAddr,
    pub envoy: Envoy,
    /// The emulator's address, for every service.
    pub address: SocketAddr,
    pub emulator: Running,
    /// More addresses of the same services (`Reach::PinnedTo`), each its own emulator.
    pub others: Vec<(SocketAddr, Running)>,
    spawner: Spawner,
    pub controller: Controller,
    _signer: Signer,
    backend: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

/// How the sidecar finds the emulator.
#[derive(Clone, Copy, Debug)]
pub enum Reach {
    /// Each host pinned to the emulator's address (`--resolve`): a cluster per destination.
    Pinned,
    /// The same at this many addresses, an emulator at each.
    PinnedTo(usize),
    /// By DNS, which the emulator answers with this loopback address, where it listens on 443
    /// as VPC Lattice does: the shared forward-proxy cluster. Needs root.
    Dns(std::net::Ipv4Addr),
}

impl Lattice {
    /// Starts everything and waits until the sidecar routes [`HOST`]; `emulator` and
    /// `controller` are extra flags of each.
    pub async fn start(emulator: &[String], controller: &[String]) -> Lattice {
        Self::start_reached(Reach::Pinned, "ext-proc", emulator, controller).await
    }

    /// The same, the sidecar finding the emulator as `reach` says and signing in the mode
    /// `signing` (`ext-proc`, or `native` with the caller's keys in Envoy's environment).
    pub async fn start_reached(
        reach: Reach,
        signing: &str,
        emulator: &[String],
        controller: &[String],
    ) -> Lattice {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
        let routes = [
            ("orders", HOST, ""),
            ("private", PRIVATE_HOST, ""),
            (
                "retried",
                RETRIED_HOST,
                "    retry: {attempts: 3, codes: [503], backoff: 10ms}\n",
            ),
        ];
        for (name, host, rule) in routes {
            let file = manifests.join(format!("{name}.yaml"));
            std::fs::write(file, route(name, host, rule)).unwrap();
        }
        std::fs::write(manifests.join("private-policy.yaml"), PRIVATE_POLICY).unwrap();
        std::fs::write(dir.path().join("identities.yaml"), IDENTITIES).unwrap();
        let certificate = ServerCert::write(dir.path(), "lattice", &["*.example.com"]);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
            let traceparent = headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-")
                .to_string();
            format!("orders-v1 traceparent={traceparent}\n")
        });
        let backend = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let (lattice, dns, more) = match reach {
            Reach::Pinned => (SocketAddr::from(([127, 0, 0, 1], free_port())), None, 0),
            Reach::PinnedTo(addresses) => (
                SocketAddr::from(([127, 0, 0, 1], free_port())),
                None,
                addresses.saturating_sub(1),
            ),
            Reach::Dns(ip) => (
                SocketAddr::from((ip, 443)),
                Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
                0,
            ),
        };
        let spawner = Spawner {
            dir: dir.path().to_path_buf(),
            args: vec![
                format!("--manifests={}", manifests.display()),
                format!(
                    "--identities={}",
                    dir.path().join("identities.yaml").display()
                ),
                format!("--tls-cert={}", certificate.cert_file.display()),
                format!("--tls-key={}", certificate.key_file.display()),
                format!("--backend=orders-v1=http://127.0.0.1:{backend_port}"),
                format!("--region={REGION}"),
            ],
        };
        let mut first = emulator.to_vec();
        if let Some(dns) = dns {
            first.push(format!("--dns-listen={dns}"));
            first.push(format!("--dns-answer={}", lattice.ip()));
        }
        let emulator = spawner.spawn(lattice, &first, "emulator").await;
        let mut others = Vec::new();
        for n in 0..more {
            let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let name = format!("emulator-{}", n + 1);
            others.push((address, spawner.spawn(address, &[], &name).await));
        }

        let credentials = [
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_SESSION_TOKEN", TOKEN.to_string()),
            ("AWS_REGION", REGION.to_string()),
        ];
        let signer = Signer::start(dir.path(), "signer", &[], &credentials).await;
        let egress_port = free_port();
        let mut args = vec![
            format!("--manifests={}", manifests.display()),
            format!("--ca-file={}", certificate.ca_file.display()),
            format!("--signing={signing}"),
            format!("--region={REGION}"),
            format!("--signer-grpc-address={}", signer.grpc),
            format!("--signer-http-address={}", signer.http),
            "--unknown-hosts=deny".to_string(),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
        ];
        match dns {
            None => {
                let addresses = [lattice].into_iter().chain(others.iter().map(|(a, _)| *a));
                for address in addresses {
                    args.extend([
                        format!("--resolve={HOST}={address}"),
                        format!("--resolve={PRIVATE_HOST}={address}"),
                        format!("--resolve={RETRIED_HOST}={address}"),
                    ]);
                }
            }
            Some(dns) => args.push(format!("--dns-resolver={dns}")),
        }
        args.extend(controller.iter().cloned());
        let controller = Controller::start(dir.path(), &args).await;
        let envoy_env: &[(&str, String)] = match signing {
            "native" => &credentials,
            _ => &[],
        };
        let envoy = Envoy::start_with_env(
            dir.path(),
            "caller-pod",
            controller.xds_port,
            "delta",
            envoy_env,
        )
        .await;
        let egress = SocketAddr::from(([127, 0, 0, 1], egress_port));
        // Routed: an answer other than the sidecar's own 404 (a fault's is one).
        eventually(
            &format!("{HOST} to be routed"),
            Duration::from_secs(30),
            || async {
                http::get(egress, HOST, "/ready")
                    .await
                    .filter(|r| r.status != 404)
            },
        )
        .await;
        Lattice {
            egress,
            envoy,
            address: lattice,
            others,
            spawner,
            emulator,
            controller,
            _signer: signer,
            backend,
            dir,
        }
    }
}

impl Lattice {
    /// Starts the emulator at the `n`th other address again, with `args` besides the usual
    /// ones; the one there stops first.
    pub async fn restart_other(&mut self, n: usize, args: &[String]) {
        let (address, old) = self.others.remove(n);
        drop(old);
        let name = format!("emulator-{}-again", n + 1);
        let new = self.spawner.spawn(address, args, &name).await;
        self.others.insert(n, (address, new));
    }
}

/// Starts emulators of the same services, the same callers and the same backend.
struct Spawner {
    dir: std::path::PathBuf,
    args: Vec<String>,
}

impl Spawner {
    /// An emulator listening on `address`, with `extra` flags, once it is ready; it logs to
    /// `<name>.log`.
    async fn spawn(&self, address: SocketAddr, extra: &[String], name: &str) -> Running {
        let mut command = std::process::Command::new(lattice_xds());
        command
            .arg("emulate-lattice")
            .args(&self.args)
            .arg(format!("--listen={address}"))
            .args(extra);
        isolate_aws(&mut command, &self.dir);
        let emulator = Running::spawn(&mut command, &self.dir.join(format!("{name}.log")));
        eventually("the Lattice emulator", Duration::from_secs(20), || async {
            let log = emulator.log_text();
            assert!(!log.contains("cannot listen"), "{log}");
            log.contains("VPC Lattice emulator ready").then_some(())
        })
        .await;
        emulator
    }
}

impl Drop for Lattice {
    fn drop(&mut self) {
        self.backend.abort();
    }
}
