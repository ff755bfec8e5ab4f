//! The Helm chart: `helm lint` and golden `helm template` output for each value set under
//! `tests/testdata/chart/<case>/values.yaml`, clear errors from `values.schema.json`, every
//! rendered manifest accepted by a real API server (server-side dry run, with the Gateway API,
//! cert-manager, Kyverno and prometheus-operator CRDs installed), the Kyverno policy injecting exactly what the
//! controller's webhook injects, and the controller's ServiceAccount able to write only its own
//! objects (`kubectl auth can-i` and real attempts, refused by the admission policy). `LATTICE_XDS_UPDATE_GOLDEN=1` rewrites the golden files.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lattice_xds::inject::{EnvoyLogLevel, EnvoyProcess, InjectConfig, inject};
use lattice_xds::logging::LogFormat;
use lattice_xds::model::{SigningAlgorithm, SigningMode};
use serde_json::Value;
use support::helm;
use support::kube::KubeCluster;

const CASES: &str = "tests/testdata/chart";

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(CASES)
        .expect("chart cases")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("values.yaml").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 4,
        "expected the chart cases, found {cases:?}"
    );
    cases
}

fn values_arg(case: &Path) -> String {
    format!("--values={}", case.join("values.yaml").display())
}

/// The case rendered, documents joined as helm prints them.
fn rendered(case: &Path) -> String {
    helm::template(&[&values_arg(case)]).join("\n---\n") + "\n"
}

#[test]
fn every_value_set_lints_and_renders_as_the_golden_files() {
    let update = std::env::var_os("LATTICE_XDS_UPDATE_GOLDEN").is_some();
    let chart = helm::chart();
    let mut mismatches = Vec::new();
    for case in cases() {
        let (ok, lint) = helm::run(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            &values_arg(&case),
        ]);
        assert!(ok, "helm lint failed for {}:\n{lint}", case.display());
        let actual = rendered(&case);
        let golden = case.join("rendered.yaml");
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}\n+++ actual\n{actual}",
                golden.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "the chart renders differently (LATTICE_XDS_UPDATE_GOLDEN=1 rewrites the files):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn the_schema_rejects_bad_values_with_clear_errors() {
    let chart = helm::chart();
    let render = |set: &str| {
        helm::run(&[
            "template",
            "lattice-xds",
            chart.to_str().unwrap(),
            "--set",
            set,
        ])
    };
    for (set, expected) in [
        ("signing.mode=sigv5", "/signing/mode"),
        (
            "signing.mode=sigv5",
            "'ext-proc', 'lua', 'native', 'module', 'none'",
        ),
        ("controller.replicas=two", "/controller/replicas"),
        ("caArns[0]=not-an-arn", "/caArns/0"),
        ("discovery.vpcId=subnet-0a1b", "/discovery/vpcId"),
        ("unknownHosts=drop", "/unknownHosts"),
        ("discovery.interval=500ms", "/discovery/interval"),
        ("calls.requestTimeout=15", "/calls/requestTimeout"),
        ("calls.retries=-1", "/calls/retries"),
        ("limits.requests=0", "/limits/requests"),
        (
            "injection.failurePolicy=Sometimes",
            "/injection/failurePolicy",
        ),
        ("sidecar.egressPort=70000", "/sidecar/egressPort"),
        ("signer.mode=lua", "'signer'"),
        ("xds.auth=token", "/xds/auth"),
        ("image.digest=latest", "/image/digest"),
        ("imagePullSecrets[0].secret=registry", "/imagePullSecrets/0"),
        ("serviceAccount.annotation=x", "'annotation'"),
        (
            "sidecar.resources.envoy.request.cpu=1",
            "/sidecar/resources/envoy",
        ),
        ("sidecar.resources.proxy.requests.cpu=1", "'proxy'"),
        (
            "monitoring.serviceMonitor.interval=often",
            "/monitoring/serviceMonitor/interval",
        ),
        (
            "monitoring.podMonitor.enabled=true,signing.mode=native",
            "no signer sidecar to scrape",
        ),
        (
            "kyverno.enabled=true,signing.unixSockets=true",
            "Kyverno policy does not share",
        ),
    ] {
        let (ok, output) = render(set);
        assert!(!ok, "--set {set} was accepted");
        assert!(
            output.contains(expected),
            "the error for --set {set} does not name {expected:?}:\n{output}"
        );
    }
    let (ok, output) = render("signing.mode=lua");
    assert!(ok, "a valid value was refused:\n{output}");
}

/// The directory of a Go module version (downloaded into Go's module cache once).
fn go_module(module: &str) -> PathBuf {
    let output = Command::new("go")
        .args(["mod", "download", "-json", module])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run go mod download");
    let info: Value = serde_json::from_slice(&output.stdout).expect("go mod download -json");
    PathBuf::from(
        info["Dir"]
            .as_str()
            .unwrap_or_else(|| panic!("{module}: {info}")),
    )
}

#[test]
fn every_rendered_manifest_is_accepted_by_the_api_server() {
    let cluster = KubeCluster::start();
    let kyverno = go_module("github.com/kyverno/kyverno@v1.19.1");
    let cert_manager = go_module("github.com/cert-manager/cert-manager@v1.21.2");
    let prometheus_operator =
        go_module("github.com/prometheus-operator/prometheus-operator@v0.85.0");
    for crd in [
        kyverno.join("config/crds/kyverno/kyverno.io_clusterpolicies.yaml"),
        cert_manager.join("deploy/crds/cert-manager.io_issuers.yaml"),
        cert_manager.join("deploy/crds/cert-manager.io_certificates.yaml"),
        prometheus_operator
            .join("example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
        prometheus_operator
            .join("example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"),
    ] {
        cluster.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    }
    cluster.wait_for_crds();
    cluster.kubectl(&["create", "namespace", "lattice-xds"]);
    // What a cluster's controller manager would have made.
    cluster.kubectl(&["create", "serviceaccount", "default", "-n", "lattice-xds"]);
    for case in cases() {
        let manifests = case.join("rendered.yaml");
        let (ok, output) = cluster.try_kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            manifests.to_str().unwrap(),
        ]);
        assert!(
            ok,
            "the API server refused {}:\n{output}",
            manifests.display()
        );
        let applied = output
            .lines()
            .filter(|line| line.contains("(server dry run)"))
            .count();
        let documents = std::fs::read_to_string(&manifests)
            .unwrap()
            .split("\n---\n")
            .count();
        assert_eq!(
            applied, documents,
            "not every document was applied:\n{output}"
        );
    }
}

/// The controller started with nothing but the settings the chart's ConfigMap gives it
/// (listening on loopback instead, and with a kubeconfig instead of a pod's service account).
async fn start_with_chart_settings(
    cluster: &KubeCluster,
    manifests: &Path,
) -> support::process::Controller {
    let text = std::fs::read_to_string(manifests).unwrap();
    let config_map = text
        .split("\n---\n")
        .find(|document| document.contains("kind: ConfigMap"))
        .expect("a ConfigMap");
    let config_map: Value = serde_yaml_ng::from_str(config_map).unwrap();
    let webhook_port = support::free_port().to_string();
    let mut env: Vec<(String, String)> = config_map["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_string()))
        .filter(|(key, _)| !key.ends_with("_LISTEN"))
        .collect();
    env.push((
        "LATTICE_XDS_WEBHOOK_LISTEN".into(),
        format!("127.0.0.1:{webhook_port}"),
    ));
    env.push((
        "LATTICE_XDS_KUBECONFIG".into(),
        cluster.kubeconfig.display().to_string(),
    ));
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    support::process::Controller::start_on(
        cluster.dir(),
        support::free_port(),
        support::free_port(),
        "chart-controller",
        &[],
        &env,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_on_the_charts_settings() {
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "lattice-xds"]);
    let case = Path::new(CASES).join("default");
    let controller = start_with_chart_settings(&cluster, &case.join("rendered.yaml")).await;
    // Ready means the flags parsed, the cluster was listed and a snapshot published; the
    // webhook CA it made is in the Secret the chart's Role names.
    support::eventually(
        "the webhook CA Secret",
        std::time::Duration::from_secs(20),
        || async {
            cluster
                .try_kubectl(&[
                    "get",
                    "secret",
                    "lattice-xds-webhook-ca",
                    "-n",
                    "lattice-xds",
                ])
                .0
                .then_some(())
        },
    )
    .await;
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_snapshots_total 1"),
        "{metrics}"
    );
}

#[test]
fn the_kyverno_policy_injects_what_the_webhook_injects() {
    kyverno_injects_what_the_webhook_injects("kyverno", SigningMode::ExtProc);
}

#[test]
fn the_kyverno_policy_injects_the_signer_module_as_the_webhook_does() {
    kyverno_injects_what_the_webhook_injects("kyverno-module", SigningMode::Module);
}

fn kyverno_injects_what_the_webhook_injects(case: &str, signing: SigningMode) {
    let case = Path::new(CASES).join(case);
    let policy = helm::template(&[&values_arg(&case)])
        .into_iter()
        .find(|document| document.contains("kind: ClusterPolicy"))
        .expect("the kyverno case renders a ClusterPolicy");
    let policy: Value = serde_yaml_ng::from_str(&policy).unwrap();
    let patch = &policy["spec"]["rules"][0]["mutate"]["patchStrategicMerge"];
    let values: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(case.join("values.yaml")).unwrap())
            .unwrap();

    let config = InjectConfig {
        image: "lattice-xds:0.1.0".to_string(),
        envoy_image: "envoyproxy/envoy:v1.40.0".to_string(),
        xds_address: "lattice-xds.lattice-xds.svc:18000".to_string(),
        egress_port: 8080,
        proxy_uid: 101,
        signing,
        region: Some("ap-northeast-2".to_string()),
        algorithm: SigningAlgorithm::SigV4,
        region_set: "*".to_string(),
        signer_probe_port: 9003,
        xds_token_audience: Some("lattice-xds".to_string()),
        controller_namespace: "lattice-xds".to_string(),
        signer_sockets: Default::default(),
        // The case's own resources, which the webhook reads from the same values.
        resources: serde_json::from_value(values["sidecar"]["resources"].clone()).unwrap(),
        envoy: EnvoyProcess {
            concurrency: 4,
            log_level: EnvoyLogLevel::Warning,
            egress_probe: true,
        },
        log_format: LogFormat::Json,
    };
    assert_eq!(values["sidecar"]["envoy"]["concurrency"], 4);
    assert_eq!(values["sidecar"]["logFormat"], "json");
    let pod = serde_json::json!({
        "metadata": { "name": "client", "labels": { "app": "client" } },
        "spec": { "containers": [{ "name": "app", "image": "busybox" }] }
    });
    // Kyverno puts in the CA the controller publishes in a ConfigMap, read at admission.
    let injected = inject(&pod, &config, Some("{{ xdsca }}"));

    // Kyverno names the workload with a JMESPath expression; everything else must be equal.
    let workload_arg = |containers: &Value| {
        let mut containers = containers.clone();
        let args = &mut containers[1]["args"];
        let at = args
            .as_array()
            .unwrap()
            .iter()
            .position(|a| a == "--cluster")
            .unwrap();
        args[at + 1] = Value::from("<workload>");
        containers
    };
    assert_eq!(
        workload_arg(&patch["spec"]["initContainers"]),
        workload_arg(&injected["spec"]["initContainers"])
    );
    assert_eq!(patch["spec"]["volumes"], injected["spec"]["volumes"]);
    assert_eq!(
        patch["metadata"]["annotations"],
        serde_json::json!({ "lattice-xds/injected": "true" })
    );
}

/// The chart's RBAC and admission policy for `case`, applied to `cluster`.
fn apply_permissions(cluster: &KubeCluster, case: &str) {
    const KINDS: [&str; 7] = [
        "kind: ServiceAccount",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Role\n",
        "kind: RoleBinding",
        "kind: ValidatingAdmissionPolicy\n",
        "kind: ValidatingAdmissionPolicyBinding",
    ];
    let text = std::fs::read_to_string(Path::new(CASES).join(case).join("rendered.yaml")).unwrap();
    for document in text.split("\n---\n") {
        if KINDS.iter().any(|kind| document.contains(kind)) {
            cluster.apply(document);
        }
    }
}

const CONTROLLER: &str = "--as=system:serviceaccount:lattice-xds:lattice-xds";

/// `kubectl auth can-i` as the controller's ServiceAccount.
fn can_i(cluster: &KubeCluster, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i", CONTROLLER];
    full.extend(args);
    let (_, answer) = cluster.try_kubectl(&full);
    answer.trim() == "yes"
}

/// `kubectl create` as the controller's ServiceAccount: whether it worked, and what it said.
fn create_as_controller(cluster: &KubeCluster, args: &[&str]) -> (bool, String) {
    let mut full = vec!["create", CONTROLLER];
    full.extend(args);
    cluster.try_kubectl(&full)
}

#[test]
fn the_controller_can_write_only_its_own_objects() {
    let cluster = KubeCluster::start();
    for namespace in ["lattice-xds", "apps"] {
        cluster.kubectl(&["create", "namespace", namespace]);
    }
    cluster.kubectl(&["label", "namespace", "apps", "lattice-xds/ca-bundle=true"]);
    apply_permissions(&cluster, "default");

    // The admission policy takes a moment to be enforced: wait for its first refusal.
    let mut attempt = 0;
    let refusal = loop {
        attempt += 1;
        let name = format!("probe-{attempt}");
        let (created, output) =
            create_as_controller(&cluster, &["configmap", &name, "-n", "kube-system"]);
        if !created {
            break output;
        }
        cluster.kubectl(&["delete", "configmap", &name, "-n", "kube-system"]);
        assert!(attempt < 100, "the admission policy was never enforced");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        refusal.contains("lattice-xds may write only the ConfigMaps lattice-xds-ca-bundle"),
        "{refusal}"
    );

    // RBAC lets it create ConfigMaps anywhere (a name cannot limit create) ...
    assert!(can_i(
        &cluster,
        &["create", "configmaps", "-n", "kube-system"]
    ));
    // ... and the API server refuses every other name.
    let (created, output) =
        create_as_controller(&cluster, &["configmap", "aws-auth", "-n", "kube-system"]);
    assert!(!created, "the controller created kube-system/aws-auth");
    assert!(output.contains("lattice-xds may write only"), "{output}");
    let (created, _) = create_as_controller(
        &cluster,
        &["configmap", "lattice-xds-xds-ca", "-n", "kube-system"],
    );
    assert!(
        !created,
        "the published CA's name was accepted outside the release namespace"
    );
    let (created, output) = create_as_controller(
        &cluster,
        &["configmap", "lattice-xds-ca-bundle", "-n", "apps"],
    );
    assert!(created, "the CA bundle itself was refused: {output}");
    // Only where the namespace asked for it with the bundle label.
    cluster.kubectl(&["create", "namespace", "unlabelled"]);
    let (created, output) = create_as_controller(
        &cluster,
        &["configmap", "lattice-xds-ca-bundle", "-n", "unlabelled"],
    );
    assert!(
        !created,
        "the CA bundle went into a namespace that did not ask"
    );
    assert!(output.contains("in namespaces labelled"), "{output}");

    // Its webhook configuration: the caBundle may change, nothing else.
    let rendered =
        std::fs::read_to_string(Path::new(CASES).join("default").join("rendered.yaml")).unwrap();
    let webhook = (rendered.split("\n---\n"))
        .find(|document| document.contains("kind: MutatingWebhookConfiguration"))
        .expect("the rendered webhook configuration");
    cluster.apply(webhook);
    let patch_with = |json: &str, extra: &[&str]| {
        let mut args = vec![
            "patch",
            CONTROLLER,
            "mutatingwebhookconfiguration",
            "lattice-xds",
            "--type=json",
            "-p",
            json,
        ];
        args.extend(extra);
        cluster.try_kubectl(&args)
    };
    let patch = |json: &str| patch_with(json, &[]);
    let widen = r#"[{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE", "UPDATE"]}]"#;
    // This policy, too, takes a moment to be enforced: wait for a refusal of a dry run, which
    // changes nothing when it is let through.
    for attempt in 1.. {
        if !patch_with(widen, &["--dry-run=server"]).0 {
            break;
        }
        assert!(
            attempt < 100,
            "the webhook's admission policy was never enforced"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (patched, output) =
        patch(r#"[{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Q0E="}]"#);
    assert!(patched, "the caBundle patch was refused: {output}");
    let (patched, output) = patch(widen);
    assert!(!patched, "the controller widened its webhook's rules");
    assert!(output.contains("may change only the caBundle"), "{output}");
    let (created, output) = create_as_controller(
        &cluster,
        &["secret", "generic", "other", "-n", "lattice-xds"],
    );
    assert!(!created, "the controller created another Secret");
    assert!(output.contains("lattice-xds may write only"), "{output}");
    let (created, output) = create_as_controller(
        &cluster,
        &[
            "secret",
            "generic",
            "lattice-xds-webhook-ca",
            "-n",
            "lattice-xds",
        ],
    );
    assert!(created, "its own CA Secret was refused: {output}");

    // What it reads and changes is named.
    for (allowed, args) in [
        (true, &["create", "tokenreviews.authentication.k8s.io"][..]),
        // The issuer's public keys, to check a token's signature first.
        (true, &["get", "/openid/v1/jwks"]),
        (true, &["get", "/.well-known/openid-configuration"]),
        (
            true,
            &["patch", "mutatingwebhookconfigurations/lattice-xds"],
        ),
        (false, &["patch", "mutatingwebhookconfigurations/other"]),
        (
            true,
            &["patch", "configmaps/lattice-xds-ca-bundle", "-n", "apps"],
        ),
        (false, &["patch", "configmaps/other", "-n", "apps"]),
        (
            false,
            &["delete", "configmaps/lattice-xds-ca-bundle", "-n", "apps"],
        ),
        (false, &["get", "secrets", "-n", "kube-system"]),
        // Nothing it watches is read by name; the bundle is only applied.
        (
            false,
            &["get", "httproutes.gateway.networking.k8s.io", "-n", "apps"],
        ),
        (
            false,
            &["get", "configmaps/lattice-xds-ca-bundle", "-n", "apps"],
        ),
        (
            false,
            &["update", "configmaps/lattice-xds-ca-bundle", "-n", "apps"],
        ),
        // Its Lease lives in its own namespace.
        (
            true,
            &["create", "leases.coordination.k8s.io", "-n", "lattice-xds"],
        ),
        (
            false,
            &["create", "leases.coordination.k8s.io", "-n", "kube-system"],
        ),
        (false, &["list", "secrets", "-n", "lattice-xds"]),
        (
            true,
            &["get", "secrets/lattice-xds-webhook-ca", "-n", "lattice-xds"],
        ),
        (
            false,
            &[
                "update",
                "httproutes.gateway.networking.k8s.io",
                "-n",
                "apps",
            ],
        ),
    ] {
        assert_eq!(can_i(&cluster, args), allowed, "can-i {args:?}");
    }

    // When cert-manager keeps the certificates, the controller neither patches the webhook
    // configuration nor reads a CA Secret.
    apply_permissions(&cluster, "cert-manager");
    cluster.kubectl(&["delete", "role", "lattice-xds", "-n", "lattice-xds"]);
    assert!(!can_i(
        &cluster,
        &["patch", "mutatingwebhookconfigurations/lattice-xds"]
    ));
    assert!(!can_i(
        &cluster,
        &["get", "secrets/lattice-xds-webhook-ca", "-n", "lattice-xds"]
    ));
}
