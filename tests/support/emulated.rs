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
    /// The emulator's one address, for every service.
    pub address: SocketAddr,
    pub emulator: Running,
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

        let (lattice, dns) = match reach {
            Reach::Pinned => (SocketAddr::from(([127, 0, 0, 1], free_port())), None),
            Reach::Dns(ip) => (
                SocketAddr::from((ip, 443)),
                Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            ),
        };
        let mut command = std::process::Command::new(lattice_xds());
        command
            .arg("emulate-lattice")
            .arg(format!("--manifests={}", manifests.display()))
            .arg(format!(
                "--identities={}",
                dir.path().join("identities.yaml").display()
            ))
            .arg(format!("--tls-cert={}", certificate.cert_file.display()))
            .arg(format!("--tls-key={}", certificate.key_file.display()))
            .arg(format!("--listen={lattice}"))
            .arg(format!(
                "--backend=orders-v1=http://127.0.0.1:{backend_port}"
            ))
            .arg(format!("--region={REGION}"))
            .args(emulator);
        if let Some(dns) = dns {
            command.arg(format!("--dns-listen={dns}"));
            command.arg(format!("--dns-answer={}", lattice.ip()));
        }
        isolate_aws(&mut command, dir.path());
        let emulator = Running::spawn(&mut command, &dir.path().join("emulator.log"));
        eventually("the Lattice emulator", Duration::from_secs(20), || async {
            let log = emulator.log_text();
            assert!(!log.contains("cannot listen"), "{log}");
            log.contains("VPC Lattice emulator ready").then_some(())
        })
        .await;

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
            None => args.extend([
                format!("--resolve={HOST}={lattice}"),
                format!("--resolve={PRIVATE_HOST}={lattice}"),
                format!("--resolve={RETRIED_HOST}={lattice}"),
            ]),
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
            emulator,
            controller,
            _signer: signer,
            backend,
            dir,
        }
    }
}

impl Drop for Lattice {
    fn drop(&mut self) {
        self.backend.abort();
    }
}
