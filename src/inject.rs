//! Sidecar injection: what the admission webhook adds to a pod that opted in.
//!
//! A pod opts in through its namespace's label `lattice-xds/inject=enabled` (the webhook is
//! called on a path that says so) or its own label `lattice-xds/inject=enabled`: labels, so
//! that the API server sends only those pods to the webhook. Inside an opted-in namespace the
//! walkthrough's annotation `vpc-lattice-svcs.amazonaws.com/agent-inject` still decides (its
//! misspelt `vpc-lattices-svcs.…` too): `"false"` opts a pod out, as does the label
//! `lattice-xds/inject=disabled`. Pods with `hostNetwork`, and pods of `kube-system` or the
//! controller's own namespace, are never injected. A pod that is injected gets:
//! - init container `lattice-xds-redirect`: `lattice-xds redirect`, the iptables rules that
//!   send Lattice-bound connections to the egress port (root, NET_ADMIN and NET_RAW only);
//! - init container `lattice-xds-bootstrap`: `lattice-xds bootstrap` writes Envoy's bootstrap,
//!   node id `<pod>.<namespace>` from the downward API;
//! - sidecar `lattice-xds-envoy`: stock Envoy on that bootstrap, as the proxy uid/gid;
//! - sidecar `lattice-xds-signer`: `lattice-xds signer` (in the ext-proc and Lua signing modes
//!   only; the module mode signs inside Envoy with the module the bootstrap container copies).
//!
//! The sidecars are native sidecars (init containers that keep running) with startup probes:
//! Envoy's passes once its egress listener exists, that is once the controller has configured
//! it, and the signer's once it holds credentials. The kubelet starts the application only
//! after both, so its first call is routed and signed. A marker annotation makes injection
//! idempotent.

pub mod webhook;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};

use crate::logging::LogFormat;
use crate::model::{SigningAlgorithm, SigningMode};

/// Set on every injected pod; a pod carrying it is never injected again.
pub const INJECTED_ANNOTATION: &str = "lattice-xds/injected";
/// The same key as a label, `true` on every injected pod, for selectors (the chart's
/// PodMonitor scrapes the signers of these pods only).
pub const INJECTED_LABEL: &str = "lattice-xds/injected";
/// The opt-in annotation, spelt correctly.
pub const INJECT_ANNOTATION: &str = "vpc-lattice-svcs.amazonaws.com/agent-inject";
/// The same, as the walkthrough's Kyverno policy spells it.
pub const WALKTHROUGH_INJECT_ANNOTATION: &str = "vpc-lattices-svcs.amazonaws.com/agent-inject";
/// The label that opts a namespace's pods, or a single pod, in (`enabled`) or a pod out
/// (`disabled`); the webhook configuration selects on it.
pub const NAMESPACE_LABEL: &str = "lattice-xds/inject";
/// Namespaces never injected, whatever they say (besides the controller's own).
pub const NEVER_INJECTED: &[&str] = &["kube-system"];

const BOOTSTRAP_VOLUME: &str = "lattice-xds-bootstrap";
const BOOTSTRAP_DIR: &str = "/etc/lattice-xds";
const BOOTSTRAP_FILE: &str = "/etc/lattice-xds/envoy.yaml";
const TOKEN_VOLUME: &str = "lattice-xds-token";
const SOCKET_VOLUME: &str = "lattice-xds-signer-sockets";
const TOKEN_DIR: &str = "/var/run/secrets/lattice-xds";
const TOKEN_FILE: &str = "/var/run/secrets/lattice-xds/xds-token";
/// How long the projected xDS token lives; the kubelet renews it at 80% of that.
const TOKEN_SECONDS: u32 = 3600;
/// The uid the signer runs as (distroless `nonroot`).
const SIGNER_UID: u32 = 65532;

/// What the injected containers are made of.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectConfig {
    /// The lattice-xds image (redirect, bootstrap and signer containers).
    pub image: String,
    /// The stock Envoy image.
    pub envoy_image: String,
    /// The controller's ADS address as the sidecars reach it, `host:port`.
    pub xds_address: String,
    pub egress_port: u16,
    pub proxy_uid: u32,
    pub signing: SigningMode,
    /// AWS_REGION for the signer, when the controller knows it.
    pub region: Option<String>,
    /// The signature algorithm, and the SigV4A region set: the signer signs only for what
    /// the controller configured.
    pub algorithm: SigningAlgorithm,
    pub region_set: String,
    /// Port of the signer's probe listener (/healthz, /readyz; never signs).
    pub signer_probe_port: u16,
    /// When ADS streams must authenticate: the audience of the projected token Envoy sends.
    pub xds_token_audience: Option<String>,
    /// The controller's namespace: never injected.
    pub controller_namespace: String,
    /// Unix sockets the signer serves Envoy on (ext_proc, HTTP), instead of loopback ports.
    pub signer_sockets: SignerSockets,
    /// The injected containers' requests and limits.
    pub resources: SidecarResources,
    /// How the injected Envoy runs.
    pub envoy: EnvoyProcess,
    /// The form of the injected signer's and Envoy's log lines.
    pub log_format: LogFormat,
}

/// The injected Envoy's command line, and how the kubelet tells that it has started.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvoyProcess {
    /// Worker threads (`--concurrency`). Without it Envoy starts one per CPU of the node, each
    /// with its own connections, TLS contexts and memory.
    pub concurrency: u32,
    pub log_level: EnvoyLogLevel,
    /// Whether the egress listener takes connections on the pod's address (it listens on every
    /// address), so that the startup probe can connect to it. The listener comes from the
    /// controller: until it exists Envoy has not been configured, and the application must not
    /// start.
    pub egress_probe: bool,
}

impl Default for EnvoyProcess {
    fn default() -> Self {
        Self {
            concurrency: 2,
            log_level: EnvoyLogLevel::Warning,
            egress_probe: true,
        }
    }
}

/// Envoy's `--log-level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvoyLogLevel {
    Trace,
    Debug,
    Info,
    #[default]
    #[value(alias = "warn")]
    Warning,
    Error,
    Critical,
    Off,
}

impl EnvoyLogLevel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Off => "off",
        }
    }
}

/// Envoy's own log lines as one JSON object each, in the shape of the signer's and the
/// controller's: `timestamp`, `level`, `target` (`envoy.<logger>`) and `fields.message`.
pub const ENVOY_JSON_LOG_FORMAT: &str =
    r#"{"timestamp":"%Y-%m-%dT%T.%eZ","level":"%l","target":"envoy.%n","fields":{"message":"%j"}}"#;

/// How often the kubelet asks whether an injected sidecar has started, and how many failed
/// answers in a row it takes before it restarts the sidecar: the application starts only once
/// both have started, and a pod that cannot reach the controller shows a restart every five
/// minutes while it waits.
const STARTUP_PERIOD_SECONDS: u32 = 1;
const STARTUP_FAILURES: u32 = 300;

fn startup_probe(check: Value) -> Value {
    let mut probe = check;
    probe["periodSeconds"] = json!(STARTUP_PERIOD_SECONDS);
    probe["failureThreshold"] = json!(STARTUP_FAILURES);
    probe
}

/// The `resources` of each injected container, as Kubernetes writes them (`requests`,
/// `limits`). The defaults request what the sidecars use at rest and set no limit: a CPU limit
/// would throttle every request of the pod, a memory limit would kill Envoy under a burst of
/// connections.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarResources {
    pub envoy: ResourceRequirements,
    pub signer: ResourceRequirements,
    /// The two init containers, redirect and bootstrap, which run once and exit.
    pub init: ResourceRequirements,
}

impl Default for SidecarResources {
    fn default() -> Self {
        let requests = |cpu: &str, memory: &str| ResourceRequirements {
            requests: Some(
                [("cpu", cpu), ("memory", memory)]
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), Quantity(value.to_string())))
                    .collect(),
            ),
            ..Default::default()
        };
        Self {
            envoy: requests("50m", "80Mi"),
            signer: requests("10m", "16Mi"),
            init: requests("10m", "16Mi"),
        }
    }
}

impl std::str::FromStr for SidecarResources {
    type Err = String;

    /// JSON: `{"envoy": {...}, "signer": {...}, "init": {...}}`, each a container's
    /// `resources`.
    fn from_str(json: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(json).map_err(|error| {
            format!("not {{\"envoy\": …, \"signer\": …, \"init\": …}} with each a container's resources: {error}")
        })
    }
}

impl std::fmt::Display for SidecarResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&json)
    }
}

fn resources(requirements: &ResourceRequirements) -> Value {
    serde_json::to_value(requirements).unwrap_or_else(|_| json!({}))
}

/// The signer's Unix sockets, when it uses them; both live in one directory the two sidecars
/// share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignerSockets {
    pub grpc: Option<String>,
    pub http: Option<String>,
}

impl SignerSockets {
    /// The directory holding the sockets.
    fn dir(&self) -> Option<&str> {
        let path = self.grpc.as_deref().or(self.http.as_deref())?;
        std::path::Path::new(path).parent()?.to_str()
    }
}

/// Why a pod was or was not injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Inject,
    NotRequested,
    OptedOut,
    AlreadyInjected,
    /// `hostNetwork: true`: the redirect would rewrite the node's iptables.
    HostNetwork,
}

/// Whether `pod` should be injected; `namespace_opted_in` when its namespace has the label.
pub fn decide(pod: &Value, namespace_opted_in: bool) -> Decision {
    let annotations = &pod["metadata"]["annotations"];
    if annotations.get(INJECTED_ANNOTATION).is_some() || has_container(pod, "lattice-xds-envoy") {
        return Decision::AlreadyInjected;
    }
    let annotated = [INJECT_ANNOTATION, WALKTHROUGH_INJECT_ANNOTATION]
        .iter()
        .find_map(|key| annotations.get(*key).and_then(Value::as_str))
        .map(|value| value.trim().eq_ignore_ascii_case("true"));
    let labelled = pod["metadata"]["labels"][NAMESPACE_LABEL]
        .as_str()
        .map(|value| value == "enabled");
    let decision = match (labelled, annotated, namespace_opted_in) {
        (Some(false), _, _) | (_, Some(false), _) => Decision::OptedOut,
        (Some(true), _, _) | (_, Some(true), _) | (None, None, true) => Decision::Inject,
        (None, None, false) => Decision::NotRequested,
    };
    if decision == Decision::Inject && pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        return Decision::HostNetwork;
    }
    decision
}

fn has_container(pod: &Value, name: &str) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        pod["spec"][list]
            .as_array()
            .is_some_and(|containers| containers.iter().any(|c| c["name"] == name))
    })
}

/// The pod with the sidecars added. `xds_ca` (PEM) when the controller serves ADS over TLS.
pub fn inject(pod: &Value, config: &InjectConfig, xds_ca: Option<&str>) -> Value {
    let mut pod = pod.clone();
    let workload = workload_name(&pod);
    let mut metadata = take_object(&mut pod["metadata"]);
    let mut annotations = take_object(metadata.entry("annotations").or_insert(Value::Null));
    annotations.insert(INJECTED_ANNOTATION.to_string(), json!("true"));
    metadata.insert("annotations".to_string(), Value::Object(annotations));
    let mut labels = take_object(metadata.entry("labels").or_insert(Value::Null));
    labels.insert(INJECTED_LABEL.to_string(), json!("true"));
    metadata.insert("labels".to_string(), Value::Object(labels));
    pod["metadata"] = Value::Object(metadata);

    let mut spec = take_object(&mut pod["spec"]);
    let mut init = vec![
        redirect_container(config),
        bootstrap_container(config, &workload, xds_ca),
    ];
    init.push(envoy_container(config));
    if signs_with_sidecar(config.signing) {
        init.push(signer_container(config));
    }
    let existing = spec.remove("initContainers");
    let mut all = init;
    if let Some(Value::Array(existing)) = existing {
        all.extend(existing);
    }
    spec.insert("initContainers".to_string(), Value::Array(all));
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(volumes) = volumes {
        volumes.push(json!({ "name": BOOTSTRAP_VOLUME, "emptyDir": {} }));
        if config.signer_sockets.dir().is_some() && signs_with_sidecar(config.signing) {
            volumes.push(json!({ "name": SOCKET_VOLUME, "emptyDir": {} }));
        }
        if let Some(audience) = &config.xds_token_audience {
            volumes.push(json!({
                "name": TOKEN_VOLUME,
                "projected": { "sources": [{ "serviceAccountToken": {
                    "audience": audience,
                    "expirationSeconds": TOKEN_SECONDS,
                    "path": "xds-token",
                } }] }
            }));
        }
    }
    pod["spec"] = Value::Object(spec);
    pod
}

/// Whether the mode has a signer sidecar.
fn signs_with_sidecar(mode: SigningMode) -> bool {
    matches!(mode, SigningMode::ExtProc | SigningMode::Lua)
}

/// The shared socket directory's mount, when the signer serves on Unix sockets.
fn socket_mount(config: &InjectConfig) -> Option<Value> {
    let dir = config.signer_sockets.dir()?;
    signs_with_sidecar(config.signing).then(|| json!({ "name": SOCKET_VOLUME, "mountPath": dir }))
}

/// The JSON object `value` holds, taken out of it; an empty one when it holds anything else
/// (such as nothing).
fn take_object(value: &mut Value) -> serde_json::Map<String, Value> {
    match std::mem::take(value) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// The service cluster Envoy reports: the pod's app label, else its generate name's stem,
/// else its name.
fn workload_name(pod: &Value) -> String {
    let metadata = &pod["metadata"];
    let label = |key: &str| metadata["labels"][key].as_str().map(str::to_string);
    label("app.kubernetes.io/name")
        .or_else(|| label("app"))
        .or_else(|| {
            metadata["generateName"]
                .as_str()
                .map(|name| name.trim_end_matches('-').to_string())
        })
        .or_else(|| metadata["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn downward_env() -> Value {
    json!([
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }
    ])
}

fn redirect_container(config: &InjectConfig) -> Value {
    json!({
        "name": "lattice-xds-redirect",
        "image": config.image,
        "args": [
            "redirect",
            "--egress-port", config.egress_port.to_string(),
            "--proxy-uid", config.proxy_uid.to_string(),
            "--proxy-gid", config.proxy_uid.to_string(),
        ],
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "seccompProfile": { "type": "RuntimeDefault" },
            "capabilities": { "drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"] }
        },
        "resources": resources(&config.resources.init)
    })
}

fn bootstrap_container(config: &InjectConfig, workload: &str, xds_ca: Option<&str>) -> Value {
    let mut args = vec![
        "bootstrap",
        "--node-id",
        "$(POD_NAME).$(POD_NAMESPACE)",
        "--cluster",
        workload,
        "--namespace",
        "$(POD_NAMESPACE)",
        "--xds-address",
        &config.xds_address,
        "--output",
        BOOTSTRAP_FILE,
    ];
    if config.xds_token_audience.is_some() {
        args.extend(["--xds-token-file", TOKEN_FILE]);
    }
    if config.signing == SigningMode::Module {
        // The image's signer module, beside the bootstrap, where Envoy finds it.
        args.extend(["--module-dir", BOOTSTRAP_DIR]);
    }
    let mut env = downward_env();
    if let (Some(ca), Value::Array(env)) = (xds_ca, &mut env) {
        env.push(json!({ "name": "LATTICE_XDS_XDS_CA", "value": ca }));
    }
    json!({
        "name": "lattice-xds-bootstrap",
        "image": config.image,
        "args": args,
        "env": env,
        "volumeMounts": [{ "name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR }],
        "securityContext": restricted(SIGNER_UID),
        "resources": resources(&config.resources.init)
    })
}

fn envoy_container(config: &InjectConfig) -> Value {
    let mut mounts =
        vec![json!({ "name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR, "readOnly": true })];
    if config.xds_token_audience.is_some() {
        mounts.push(json!({ "name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true }));
    }
    mounts.extend(socket_mount(config));
    let mut args = vec![
        "-c".to_string(),
        BOOTSTRAP_FILE.to_string(),
        "--disable-hot-restart".to_string(),
        "--concurrency".to_string(),
        config.envoy.concurrency.to_string(),
        "--log-level".to_string(),
        config.envoy.log_level.as_str().to_string(),
    ];
    if config.log_format == LogFormat::Json {
        args.extend([
            "--log-format".to_string(),
            ENVOY_JSON_LOG_FORMAT.to_string(),
        ]);
    }
    let mut container = json!({
        "name": "lattice-xds-envoy",
        "image": config.envoy_image,
        "restartPolicy": "Always",
        "args": args,
        "volumeMounts": mounts,
        "securityContext": {
            "runAsUser": config.proxy_uid,
            "runAsGroup": config.proxy_uid,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            // Envoy writes nothing to disk: logs go to stdout, hot restart is off.
            "readOnlyRootFilesystem": true,
            "seccompProfile": { "type": "RuntimeDefault" },
            "capabilities": { "drop": ["ALL"] }
        },
        "resources": resources(&config.resources.envoy)
    });
    if config.signing == SigningMode::Module {
        // The signer module reads its scope as the signer sidecar does; the pod's credentials
        // reach Envoy as they reach every container (EKS Pod Identity).
        let mut env =
            vec![json!({ "name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "value": BOOTSTRAP_DIR })];
        env.extend(signer_scope(config));
        container["env"] = json!(env);
    }
    if config.envoy.egress_probe {
        // Envoy answers its own /ready once the controller is late; the egress listener exists
        // only once the controller has configured it.
        container["startupProbe"] =
            startup_probe(json!({ "tcpSocket": { "port": config.egress_port } }));
    }
    container
}

/// Where the image keeps the signer's own binary (see the Dockerfile).
pub const SIGNER_BINARY: &str = "/usr/local/bin/lattice-xds-signer";

fn signer_container(config: &InjectConfig) -> Value {
    let mut env = vec![
        json!({ "name": "LATTICE_XDS_ADMIN_LISTEN", "value": format!("0.0.0.0:{}", config.signer_probe_port) }),
    ];
    if config.log_format == LogFormat::Json {
        env.push(json!({ "name": "LATTICE_XDS_LOG_FORMAT", "value": "json" }));
    }
    env.extend(signer_scope(config));
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": config.signer_probe_port }, "periodSeconds": 10 });
    let mut args = Vec::new();
    let sockets = &config.signer_sockets;
    for (flag, socket) in [
        ("--grpc-socket", &sockets.grpc),
        ("--http-socket", &sockets.http),
    ] {
        if let Some(path) = socket {
            args.extend([flag.to_string(), path.clone()]);
        }
    }
    if sockets.dir().is_some() {
        args.extend([
            "--socket-peer-uid".to_string(),
            config.proxy_uid.to_string(),
        ]);
    }
    let mut container = json!({
        "name": "lattice-xds-signer",
        "image": config.image,
        "restartPolicy": "Always",
        // The signer alone: a fraction of the full binary's size and memory, in every pod.
        "command": [SIGNER_BINARY],
        "env": env,
        "ports": [{ "name": "signer-probe", "containerPort": config.signer_probe_port }],
        // Started once it holds credentials it can sign with.
        "startupProbe": startup_probe(probe("/readyz")),
        "livenessProbe": probe("/healthz"),
        "readinessProbe": probe("/readyz"),
        "securityContext": restricted(SIGNER_UID),
        "resources": resources(&config.resources.signer)
    });
    if !args.is_empty() {
        container["args"] = json!(args);
    }
    if let Some(mount) = socket_mount(config) {
        container["volumeMounts"] = json!([mount]);
    }
    container
}

/// What the signer signs for, as environment variables of the container that signs: the
/// signer sidecar, or Envoy with the signer module.
fn signer_scope(config: &InjectConfig) -> Vec<Value> {
    let mut env = Vec::new();
    if let Some(region) = &config.region {
        env.push(json!({ "name": "AWS_REGION", "value": region }));
    }
    if config.algorithm == SigningAlgorithm::SigV4a {
        env.push(
            json!({ "name": "LATTICE_XDS_SIGNING_ALGORITHM", "value": config.algorithm.as_str() }),
        );
        env.push(json!({ "name": "LATTICE_XDS_REGION_SET", "value": config.region_set }));
    }
    env
}

fn restricted(uid: u32) -> Value {
    json!({
        "runAsUser": uid,
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "seccompProfile": { "type": "RuntimeDefault" },
        "capabilities": { "drop": ["ALL"] }
    })
}

#[cfg(test)]
mod tests;
