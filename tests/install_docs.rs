//! `docs/install-eks.md` followed as written against a real API server: its values file, `helm
//! install`, `helm template`, labelling a namespace, and the uninstall that cannot leave the
//! webhook refusing pods, each command run as the page gives it. What needs AWS or a kubelet
//! (`aws …`, `kubectl rollout status`, `helm test`, pods that run) or a namespace controller
//! (`kubectl delete namespace` waits for one) is passed over, by name.

mod support;

use std::path::Path;
use std::process::Command;

use support::kube::KubeCluster;

const GUIDE: &str = "docs/install-eks.md";

/// The guide's shell commands in order, continuations joined, with each here-document kept
/// whole.
fn commands(guide: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    let mut heredoc: Option<String> = None;
    // How far the block's fence is indented (inside a list item): its lines are, as well.
    let mut fence = 0;
    for line in guide.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = trimmed == "```sh";
            fence = line.len() - line.trim_start().len();
            continue;
        }
        if !in_block || (current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#'))) {
            continue;
        }
        if heredoc.is_some() {
            // A here-document keeps its indentation (YAML, JSON).
            current.push_str(line.get(fence..).unwrap_or(trimmed));
            current.push('\n');
        } else {
            current.push_str(trimmed.trim_end_matches('\\'));
            current.push(' ');
        }
        if let Some(end) = &heredoc {
            if trimmed == end {
                heredoc = None;
                commands.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some((_, end)) = trimmed.split_once("<<") {
            current.pop();
            current.push('\n');
            // `<<EOF`, `<<'EOF'`, `<<-EOF > file`: the word that ends it.
            let word = end
                .trim_start_matches('-')
                .split_whitespace()
                .next()
                .unwrap_or("");
            heredoc = Some(word.trim_matches(['\'', '"']).to_string());
        } else if !trimmed.ends_with('\\') {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

/// Commands this machine can run as written.
fn runs_here(command: &str) -> bool {
    let skipped = [
        "aws ",
        "docker ",
        "kubectl -n lattice-xds rollout status",
        "helm test",
        "kubectl -n apps",
        "kubectl get pods",
        "lattice-xds ",
        "kubectl get crd",
        "kubectl get gatewayclass",
        "kubectl get namespace apps",
        "kubectl -n lattice-xds port-forward",
        "helm history",
        "helm rollback",
        "export ",
        "kubectl -n lattice-xds get",
        "kubectl get mutatingwebhookconfiguration lattice-xds -o yaml",
        // Waits for the namespace controller, which this API server does not run.
        "kubectl delete namespace",
    ];
    let first = command.trim_start();
    (first.starts_with("helm ") || first.starts_with("kubectl ") || first.starts_with("cat >"))
        && !skipped.iter().any(|prefix| first.starts_with(prefix))
}

/// The controller with the settings of the ConfigMap the chart installed, on loopback and with
/// the admin's kubeconfig instead of a pod's service account; once it has made what it makes
/// outside Helm.
async fn start_controller(cluster: &KubeCluster) -> support::process::Controller {
    let config_map = cluster.kubectl(&[
        "-n",
        "lattice-xds",
        "get",
        "configmap",
        "lattice-xds",
        "-o",
        "json",
    ]);
    let config_map: serde_json::Value = serde_json::from_str(&config_map).unwrap();
    let mut env: Vec<(&str, String)> = (config_map["data"].as_object().unwrap().iter())
        .filter(|(key, _)| !key.ends_with("_LISTEN"))
        .map(|(key, value)| (key.as_str(), value.as_str().unwrap().to_string()))
        .collect();
    env.push((
        "LATTICE_XDS_WEBHOOK_LISTEN",
        format!("127.0.0.1:{}", support::free_port()),
    ));
    env.push((
        "LATTICE_XDS_KUBECONFIG",
        cluster.kubeconfig.display().to_string(),
    ));
    // No AWS here: discovery and ACM PCA fail, and are retried, as they would be without access.
    env.push(("AWS_EC2_METADATA_DISABLED", "true".to_string()));
    let controller = support::process::Controller::start_on(
        cluster.dir(),
        support::free_port(),
        support::free_port(),
        "guide-controller",
        &[],
        &env,
    )
    .await;
    for (kind, name) in [
        ("secret", "lattice-xds-webhook-ca"),
        ("configmap", "lattice-xds-xds-ca"),
    ] {
        support::eventually(
            &format!("the controller's {kind} {name}"),
            std::time::Duration::from_secs(30),
            || async {
                (cluster
                    .try_kubectl(&["-n", "lattice-xds", "get", kind, name])
                    .0)
                    .then_some(())
            },
        )
        .await;
    }
    controller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_guide_runs_as_written() {
    let guide = std::fs::read_to_string(GUIDE).unwrap();
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "apps"]);
    let work = tempfile::tempdir().unwrap();
    // The chart is read from this checkout, as the guide says to run from its root.
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts"),
        work.path().join("charts"),
    )
    .unwrap();
    let tools = format!(
        "{}:{}:{}",
        cluster.kubectl_binary().parent().unwrap().display(),
        support::helm::binary().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    let mut controller = None;
    for command in commands(&guide) {
        if !runs_here(&command) {
            continue;
        }
        let output = Command::new("bash")
            .args(["-eo", "pipefail", "-c", &command])
            .current_dir(work.path())
            .env("PATH", &tools)
            .env("KUBECONFIG", &cluster.kubeconfig)
            // The values the guide asks to set first.
            .env("CLUSTER", "my-cluster")
            .env("AWS_REGION", "ap-northeast-2")
            .env("ACCOUNT_ID", "111122223333")
            .env("VPC_ID", "vpc-0a1b2c3d4e5f67890")
            .env(
                "REGISTRY",
                "111122223333.dkr.ecr.ap-northeast-2.amazonaws.com",
            )
            .env("TAG", "0.1.0")
            .env(
                "CA_ARN",
                "arn:aws:acm-pca:ap-northeast-2:111122223333:certificate-authority/0a1b2c3d",
            )
            .output()
            .expect("run bash");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "`{command}` failed:\n{said}");
        let labelled =
            command.starts_with("kubectl label namespace apps lattice-xds/inject=enabled");
        ran.push((command, said));
        if labelled {
            // What the Deployment would run, on this machine: the controller on the chart's
            // ConfigMap, which makes its CA Secret, the ADS CA's ConfigMap and its Lease.
            controller = Some(start_controller(&cluster).await);
        }
    }
    drop(controller);
    let ran_one = |start: &str| {
        ran.iter()
            .find(|(command, _)| command.starts_with(start))
            .unwrap_or_else(|| panic!("the guide no longer runs `{start}…`; it ran {ran:#?}"))
    };
    // Installed with the guide's values, rendered without a cluster, a namespace opted in.
    ran_one("cat > lattice-xds-values.yaml");
    ran_one("helm install lattice-xds charts/lattice-xds");
    ran_one("helm template lattice-xds charts/lattice-xds");
    ran_one("kubectl label namespace apps lattice-xds/inject=enabled");
    // The uninstall: the webhook set to Ignore before anything is deleted...
    let (_, failure_policy) = ran_one("kubectl get mutatingwebhookconfiguration lattice-xds");
    // One policy per webhook (namespaces that opted in, pods that did): every one Ignore.
    let policies: Vec<&str> = failure_policy.split_whitespace().collect();
    assert!(
        !policies.is_empty() && policies.iter().all(|policy| *policy == "Ignore"),
        "{failure_policy}"
    );
    ran_one("helm uninstall lattice-xds -n lattice-xds");
    // ...and nothing of the release left behind.
    let (gone, webhooks) =
        cluster.try_kubectl(&["get", "mutatingwebhookconfiguration", "lattice-xds"]);
    assert!(!gone, "{webhooks}");
    for (kind, name) in [
        ("secret", "lattice-xds-webhook-ca"),
        ("configmap", "lattice-xds-xds-ca"),
        ("lease", "lattice-xds-controller"),
        ("deployment", "lattice-xds"),
    ] {
        let (left, said) = cluster.try_kubectl(&["-n", "lattice-xds", "get", kind, name]);
        assert!(!left, "{kind} {name} is left: {said}");
    }
}
