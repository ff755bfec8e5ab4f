//! A real Kubernetes API server for the tests: etcd and kube-apiserver on free loopback ports,
//! started by `scripts/kube-up.sh` in a temporary directory and stopped (data deleted) when
//! the handle drops.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::free_port;

/// One API server with the Gateway API and AWS Gateway API Controller CRDs installed.
pub struct KubeCluster {
    dir: tempfile::TempDir,
    ports: [(&'static str, u16); 3],
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

impl KubeCluster {
    pub fn start() -> KubeCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = [
            ("KUBE_APISERVER_PORT", free_port()),
            ("ETCD_CLIENT_PORT", free_port()),
            ("ETCD_PEER_PORT", free_port()),
        ];
        let bin = Command::new(script("install-kube.sh"))
            .output()
            .expect("run install-kube.sh");
        assert!(
            bin.status.success(),
            "install-kube.sh failed: {}",
            String::from_utf8_lossy(&bin.stderr)
        );
        let bin = PathBuf::from(String::from_utf8(bin.stdout).unwrap().trim());
        let cluster = KubeCluster {
            kubeconfig: dir.path().join("kubeconfig"),
            kubectl: bin.join("kubectl"),
            dir,
            ports,
        };
        cluster.up();
        cluster
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kubectl binary, for commands run as written.
    pub fn kubectl_binary(&self) -> &Path {
        &self.kubectl
    }

    fn run_script(&self, name: &str, args: &[&str]) {
        let output = Command::new(script(name))
            .args(args)
            .env("KUBE_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(key, port)| (key, port.to_string())))
            .output()
            .expect("run the cluster script");
        assert!(
            output.status.success(),
            "{name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts etcd and the API server (again, with the same data after [`Self::down`]).
    pub fn up(&self) {
        self.run_script("kube-up.sh", &[]);
    }

    /// Stops the API server and etcd, keeping their data.
    pub fn down(&self) {
        self.run_script("kube-down.sh", &[]);
    }

    /// Runs kubectl as the cluster admin; panics with its error output on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl_with_input(&["apply", "-f", "-"], Some(yaml))
    }

    /// Runs kubectl as the admin and returns whether it succeeded, with its output.
    pub fn try_kubectl(&self, args: &[&str]) -> (bool, String) {
        self.try_kubectl_with_input(args, None)
    }

    /// Waits until every CRD is established. A CRD created a moment ago may have no status
    /// yet, which `kubectl wait` reports as an error instead of waiting: ask again until it
    /// has one.
    pub fn wait_for_crds(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (ok, output) = self.try_kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=10s",
            ]);
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CRDs were not established within 60 s:\n{output}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `kubectl create -n namespace -f -` of `manifest` (YAML or JSON).
    pub fn kubectl_in(&self, namespace: &str, manifest: &str) -> String {
        self.kubectl_with_input(&["create", "-n", namespace, "-f", "-"], Some(manifest))
    }

    /// The same, returning whether it succeeded and everything kubectl printed.
    pub fn try_kubectl_in(&self, namespace: &str, manifest: &str) -> (bool, String) {
        self.try_kubectl_with_input(&["create", "-n", namespace, "-f", "-"], Some(manifest))
    }

    /// `kubectl apply -n namespace -f -` of `manifest`.
    pub fn apply_in(&self, namespace: &str, manifest: &str) -> String {
        self.kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], Some(manifest))
    }

    fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> String {
        let (ok, text) = self.try_kubectl_with_input(args, input);
        assert!(ok, "kubectl {args:?} failed:\n{text}");
        text
    }

    fn try_kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> (bool, String) {
        let output = self.run_kubectl(args, input);
        if output.status.success() {
            return (true, String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (false, text)
    }

    fn run_kubectl(&self, args: &[&str], input: Option<&str>) -> std::process::Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Waits until the leader has put its CA into every webhook's caBundle of the chart's
    /// MutatingWebhookConfiguration `lattice-xds` (then the API server can call it).
    pub async fn wait_for_ca_bundle(&self) {
        super::eventually(
            "the caBundle to be set",
            std::time::Duration::from_secs(30),
            || async {
                let bundles = self.kubectl(&[
                    "get",
                    "mutatingwebhookconfiguration",
                    "lattice-xds",
                    "-o",
                    "jsonpath={.webhooks[*].clientConfig.caBundle}",
                ]);
                (bundles.split_whitespace().count() == 2).then_some(())
            },
        )
        .await;
    }

    /// The controller's CA certificate (PEM), from the Secret it keeps in `default`.
    pub fn controller_ca(&self) -> Vec<u8> {
        let ca = self.kubectl(&[
            "get",
            "secret",
            "lattice-xds-webhook-ca",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        base64::engine::Engine::decode(&base64::engine::general_purpose::STANDARD, ca.trim())
            .expect("the CA in the Secret is base64")
    }

    /// A kubeconfig that authenticates with a service account's token instead of the admin
    /// certificate.
    pub fn service_account_kubeconfig(&self, namespace: &str, account: &str) -> PathBuf {
        let token = self.kubectl(&["create", "token", account, "-n", namespace, "--duration=1h"]);
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let (clusters, _) = admin.split_once("users:").expect("kubeconfig users");
        let text = format!(
            "{clusters}users:\n- name: {account}\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context:\n    cluster: lattice-xds-test\n    user: {account}\ncurrent-context: sa\n",
            token.trim()
        );
        let path = self.dir.path().join(format!("{account}.kubeconfig"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let _ = Command::new(script("kube-down.sh"))
            .arg("--purge")
            .env("KUBE_DIR", self.dir.path())
            .output();
    }
}
