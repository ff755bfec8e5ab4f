//! `lattice-xds proxy-status`: a table of connected proxies, like `istioctl proxy-status`, from
//! every replica of the controller (each knows only the streams it serves), and one proxy in
//! detail: what it was sent, and what its Envoy holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::admin_api::proxy_status_service_client::ProxyStatusServiceClient;
use crate::admin_api::{
    GetConfigDumpRequest, ListProxiesRequest, ListProxiesResponse, ProxyStatus, TypeStatus,
};
use crate::cli::Output;
use crate::xds::type_url;

/// Where the replicas are, and what to show.
#[derive(Clone, Debug)]
pub struct Options {
    /// Admin addresses, each a URL or `HOST:PORT`.
    pub admins: Vec<String>,
    /// Find the replicas through the Kubernetes API instead.
    pub kubernetes: Option<KubernetesReplicas>,
    /// One proxy to show in detail: its node id, or its pod's name.
    pub node: Option<String>,
    /// That proxy's Envoy admin address, to compare what it holds with what it was sent.
    pub envoy_admin: Option<String>,
    pub format: Output,
}

/// The controller's pods, reached through port-forwards of the API server (as `kubectl
/// port-forward` does): the admin API listens on each pod's loopback.
#[derive(Clone, Debug)]
pub struct KubernetesReplicas {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub selector: String,
    pub port: u16,
}

/// One replica's answer, or why there is none.
struct Replica {
    name: String,
    /// How to reach it by hand when it could not be reached.
    hint: String,
    answer: Result<ListProxiesResponse, String>,
    client: Option<ProxyStatusServiceClient<tonic::transport::Channel>>,
}

/// Asks every replica and prints what they say; an error when none answers.
pub async fn run(options: &Options) -> anyhow::Result<()> {
    let replicas = match &options.kubernetes {
        Some(kubernetes) => kubernetes_replicas(kubernetes).await?,
        None => {
            let mut replicas = Vec::new();
            for admin in &options.admins {
                replicas.push(admin_replica(admin).await);
            }
            replicas
        }
    };
    let failures: Vec<String> = (replicas.iter())
        .filter_map(|replica| {
            let error = replica.answer.as_ref().err()?;
            Some(format!("{}: {error}\n  {}", replica.name, replica.hint))
        })
        .collect();
    if failures.len() == replicas.len() {
        anyhow::bail!("no replica answered:\n{}", failures.join("\n"));
    }
    for failure in &failures {
        eprintln!("lattice-xds: {failure}");
    }
    let answered: Vec<(&str, &ListProxiesResponse)> = (replicas.iter())
        .filter_map(|replica| Some((replica.name.as_str(), replica.answer.as_ref().ok()?)))
        .collect();
    match &options.node {
        None => (options.format).print(&report(&answered), || merged_table(&answered))?,
        Some(node) => {
            let (replica, proxy) = find(&replicas, node)?;
            let mut detail = Detail::of(&replica.name, proxy);
            if let Some(envoy_admin) = &options.envoy_admin {
                let mut client = replica
                    .client
                    .clone()
                    .context("the replica is unreachable")?;
                let sent = (client.get_config_dump(GetConfigDumpRequest {
                    node_id: proxy.node_id.clone(),
                }))
                .await
                .with_context(|| {
                    format!("{} has no config dump of {}", replica.name, proxy.node_id)
                })?
                .into_inner();
                let sent: serde_json::Value = serde_json::from_str(&sent.config_json)?;
                let held = envoy_config_dump(envoy_admin).await?;
                detail.held = Some(compare(&sent, &held));
            }
            options.format.print(&detail, || detail.text())?;
        }
    }
    Ok(())
}

/// `HOST:PORT` as the URL the gRPC client takes.
fn admin_url(admin: &str) -> String {
    match admin.contains("://") {
        true => admin.trim_end_matches('/').to_string(),
        false => format!("http://{admin}"),
    }
}

async fn admin_replica(admin: &str) -> Replica {
    let url = admin_url(admin);
    let hint = "The chart keeps the admin API on each replica's loopback: reach one with \
         `kubectl -n lattice-xds port-forward deploy/lattice-xds 19000` and \
         `lattice-xds proxy-status --admin 127.0.0.1:19000`, or ask every replica with \
         `lattice-xds proxy-status --find-replicas`"
        .to_string();
    let connected = ProxyStatusServiceClient::connect(url.clone()).await;
    let (answer, client) = match connected {
        Ok(client) => (list(client.clone()).await, Some(client)),
        Err(error) => {
            let error = crate::logging::causes(&error);
            (Err(format!("cannot reach the controller: {error}")), None)
        }
    };
    Replica {
        name: url,
        hint,
        answer,
        client,
    }
}

async fn list(
    mut client: ProxyStatusServiceClient<tonic::transport::Channel>,
) -> Result<ListProxiesResponse, String> {
    let answer = client.list_proxies(ListProxiesRequest {}).await;
    answer
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("the controller answered {status}"))
}

/// Every pod the selector finds, each reached through its own port-forward.
async fn kubernetes_replicas(kubernetes: &KubernetesReplicas) -> anyhow::Result<Vec<Replica>> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let client = crate::provider::kubernetes::client_from(kubernetes.kubeconfig.as_deref()).await?;
    let pods: Api<Pod> = Api::namespaced(client, &kubernetes.namespace);
    let listed = (pods.list(&ListParams::default().labels(&kubernetes.selector)))
        .await
        .with_context(|| {
            format!(
                "cannot list the controller's pods in namespace {}",
                kubernetes.namespace
            )
        })?;
    let names: Vec<String> = (listed.items.iter())
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    anyhow::ensure!(
        !names.is_empty(),
        "no pod in namespace {} matches {} (the chart's controller pods do; --controller-namespace and --controller-selector say where else to look)",
        kubernetes.namespace,
        kubernetes.selector
    );
    let mut replicas = Vec::new();
    for name in names {
        let hint = format!(
            "By hand: `kubectl -n {} port-forward pod/{name} {}` and `lattice-xds proxy-status --admin 127.0.0.1:{}`",
            kubernetes.namespace, kubernetes.port, kubernetes.port
        );
        let (answer, client) = match forwarded(&pods, &name, kubernetes.port).await {
            Ok(client) => (list(client.clone()).await, Some(client)),
            Err(error) => (
                Err(format!(
                    "cannot port-forward to port {}: {}",
                    kubernetes.port,
                    crate::logging::causes(error.as_ref())
                )),
                None,
            ),
        };
        replicas.push(Replica {
            name,
            hint,
            answer,
            client,
        });
    }
    Ok(replicas)
}

/// A gRPC client whose every connection is a port-forward to `port` of pod `name`.
async fn forwarded(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    port: u16,
) -> anyhow::Result<ProxyStatusServiceClient<tonic::transport::Channel>> {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    // One forward first, so that a pod that cannot be reached is said now.
    let mut first = pods.portforward(name, &[port]).await?;
    let stream = first
        .take_stream(port)
        .context("the forward has no stream")?;
    let first = std::sync::Mutex::new(Some((first, stream)));
    let (pods, name) = (pods.clone(), name.to_string());
    let connector = tower::service_fn(move |_: http::Uri| {
        let reused = first.lock().map(|mut first| first.take()).ok().flatten();
        let (pods, name) = (pods.clone(), name.clone());
        async move {
            let (forwarder, stream) = match reused {
                Some(reused) => reused,
                None => {
                    let mut forwarder = pods.portforward(&name, &[port]).await?;
                    let stream = forwarder
                        .take_stream(port)
                        .ok_or("the forward has no stream")?;
                    (forwarder, stream)
                }
            };
            tokio::spawn(async move {
                let _ = forwarder.join().await;
            });
            Ok::<_, BoxError>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://controller.invalid")
        .connect_with_connector(connector)
        .await?;
    Ok(ProxyStatusServiceClient::new(channel))
}

/// The proxy whose node id is `node`, or whose pod is named so (`<pod>.<namespace>`).
fn find<'a>(replicas: &'a [Replica], node: &str) -> anyhow::Result<(&'a Replica, &'a ProxyStatus)> {
    let matches = |proxy: &ProxyStatus| {
        proxy.node_id == node
            || proxy
                .node_id
                .split_once('.')
                .is_some_and(|(pod, _)| pod == node)
    };
    (replicas.iter())
        .find_map(|replica| {
            let proxy = replica
                .answer
                .as_ref()
                .ok()?
                .proxies
                .iter()
                .find(|p| matches(p))?;
            Some((replica, proxy))
        })
        .with_context(|| {
            format!(
                "no replica serves a proxy {node:?} (a node id, <pod>.<namespace>, or a pod's name)"
            )
        })
}

/// The table of one replica (the admin API's own).
pub fn table(response: &ListProxiesResponse) -> String {
    merged_table(&[("", response)])
}

/// The table: one row per proxy, one column per type: SYNCED, STALE (sent, not yet acked),
/// NACKED, or NOT SENT; the pod each stream authenticated as, when streams authenticate; and,
/// with more than one replica, which one serves it.
fn merged_table(replicas: &[(&str, &ListProxiesResponse)]) -> String {
    let proxies: Vec<(&str, &ProxyStatus)> = (replicas.iter())
        .flat_map(|(name, response)| response.proxies.iter().map(move |proxy| (*name, proxy)))
        .collect();
    // Streams carry an identity when the controller authenticates them (--xds-auth).
    let authenticated = proxies.iter().any(|(_, p)| !p.identity.is_empty());
    // VHDS only when a proxy fetches virtual hosts on demand.
    let on_demand = (proxies.iter()).any(|(_, proxy)| {
        proxy
            .types
            .iter()
            .any(|t| t.type_url == type_url::VIRTUAL_HOST)
    });
    let several = replicas.len() > 1;
    let types: Vec<&str> = (type_url::ORDER.into_iter())
        .filter(|t| on_demand || *t != type_url::VIRTUAL_HOST)
        .collect();
    let mut header = ["NODE", "CLUSTER", "PROTOCOL"].map(str::to_string).to_vec();
    header.extend(types.iter().map(|t| type_url::short(t).to_string()));
    if authenticated {
        header.push("IDENTITY".to_string());
    }
    if several {
        header.push("REPLICA".to_string());
    }
    let mut rows = vec![header];
    for (replica, proxy) in &proxies {
        let mut row = vec![
            proxy.node_id.clone(),
            proxy.cluster.clone(),
            proxy.protocol.clone(),
        ];
        row.extend(types.iter().map(|t| cell(proxy, t)));
        if authenticated {
            row.push(proxy.identity.clone());
        }
        if several {
            row.push(replica.to_string());
        }
        rows.push(row);
    }
    let mut out = String::new();
    for (name, response) in replicas {
        match several {
            true => {
                let _ = writeln!(
                    out,
                    "{name}: snapshot version {}",
                    response.snapshot_version
                );
            }
            false => {
                let _ = writeln!(out, "snapshot version: {}", response.snapshot_version);
            }
        }
    }
    out.push_str(&aligned(&rows));
    // Every replica serves the same destinations; the first one's are shown.
    if let Some((_, response)) = replicas.first()
        && !response.destinations.is_empty()
    {
        out.push('\n');
        out.push_str(&destinations(response));
    }
    out
}

/// What `-o json` and `-o yaml` print for the whole mesh.
#[derive(Serialize)]
struct Report {
    replicas: Vec<ReplicaReport>,
}

#[derive(Serialize)]
struct ReplicaReport {
    replica: String,
    snapshot_version: String,
    proxies: Vec<ProxyReport>,
}

#[derive(Serialize)]
struct ProxyReport {
    node: String,
    cluster: String,
    protocol: String,
    identity: String,
    connected_at_unix_ms: i64,
    /// By short type name (`CDS`, ...).
    types: BTreeMap<String, TypeReport>,
}

#[derive(Serialize)]
struct TypeReport {
    state: &'static str,
    sent_version: String,
    acked_version: String,
    nacked_version: String,
    nack_error: String,
    pushes: u64,
    sent_bytes: u64,
}

impl ProxyReport {
    fn of(proxy: &ProxyStatus) -> Self {
        let types = (proxy.types.iter())
            .map(|status| {
                let state = match () {
                    _ if !status.nacked_version.is_empty() => "NACKED",
                    _ if status.sent_version == status.acked_version => "SYNCED",
                    _ => "STALE",
                };
                let report = TypeReport {
                    state,
                    sent_version: status.sent_version.clone(),
                    acked_version: status.acked_version.clone(),
                    nacked_version: status.nacked_version.clone(),
                    nack_error: status.nack_error.clone(),
                    pushes: status.pushes,
                    sent_bytes: status.sent_bytes,
                };
                (type_url::short(&status.type_url).to_string(), report)
            })
            .collect();
        Self {
            node: proxy.node_id.clone(),
            cluster: proxy.cluster.clone(),
            protocol: proxy.protocol.clone(),
            identity: proxy.identity.clone(),
            connected_at_unix_ms: proxy.connected_at_unix_ms,
            types,
        }
    }
}

fn report(replicas: &[(&str, &ListProxiesResponse)]) -> Report {
    Report {
        replicas: (replicas.iter())
            .map(|(name, response)| ReplicaReport {
                replica: name.to_string(),
                snapshot_version: response.snapshot_version.clone(),
                proxies: response.proxies.iter().map(ProxyReport::of).collect(),
            })
            .collect(),
    }
}

/// One proxy: where it is served, each type's versions, and what its Envoy holds.
#[derive(Serialize)]
struct Detail {
    replica: String,
    #[serde(flatten)]
    proxy: ProxyReport,
    /// Per type, what the Envoy holds against what it was sent; with `--envoy-admin` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<BTreeMap<String, Held>>,
}

/// One type as the Envoy holds it, against what it was sent.
#[derive(Serialize)]
struct Held {
    sent: usize,
    held: usize,
    /// Sent, but the Envoy does not hold them.
    missing: Vec<String>,
    /// Held, but not sent by this replica (left from an earlier stream, or static).
    extra: Vec<String>,
    /// Updates the Envoy rejected, with its error.
    rejected: Vec<String>,
}

impl Detail {
    fn of(replica: &str, proxy: &ProxyStatus) -> Self {
        Self {
            replica: replica.to_string(),
            proxy: ProxyReport::of(proxy),
            held: None,
        }
    }

    fn text(&self) -> String {
        let proxy = &self.proxy;
        let mut out = format!(
            "{} (cluster {}, {}) on {}\n",
            proxy.node,
            proxy.cluster,
            proxy.protocol,
            match self.replica.as_str() {
                "" => "this replica",
                replica => replica,
            }
        );
        if !proxy.identity.is_empty() {
            let _ = writeln!(out, "authenticated as {}", proxy.identity);
        }
        let mut rows = vec![
            [
                "TYPE",
                "STATE",
                "SENT",
                "ACKED",
                "PUSHES",
                "BYTES SENT",
                "ERROR",
            ]
            .map(str::to_string)
            .to_vec(),
        ];
        for (name, status) in &proxy.types {
            rows.push(vec![
                name.clone(),
                status.state.to_string(),
                status.sent_version.clone(),
                status.acked_version.clone(),
                status.pushes.to_string(),
                status.sent_bytes.to_string(),
                status.nack_error.clone(),
            ]);
        }
        out.push_str(&aligned(&rows));
        if let Some(held) = &self.held {
            out.push_str("\nWhat its Envoy holds, against what it was sent:\n");
            for (name, held) in held {
                let same = held.missing.is_empty() && held.extra.is_empty();
                let _ = writeln!(
                    out,
                    "  {name}: {} sent, {} held{}",
                    held.sent,
                    held.held,
                    if same { ", the same" } else { "" }
                );
                for missing in &held.missing {
                    let _ = writeln!(out, "    sent, not held: {missing}");
                }
                for extra in &held.extra {
                    let _ = writeln!(out, "    held, not sent: {extra}");
                }
                for rejected in &held.rejected {
                    let _ = writeln!(out, "    rejected: {rejected}");
                }
            }
        }
        out
    }
}

/// Envoy's own `/config_dump` (its admin listens on the pod's loopback: reach it with
/// `kubectl port-forward pod/POD 9901`).
async fn envoy_config_dump(admin: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/config_dump", admin_url(admin));
    let (status, body) = crate::check::get(&url)
        .await
        .with_context(|| format!("cannot read Envoy's config dump at {url}"))?;
    anyhow::ensure!(status == 200, "{url} answered {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{url} is not JSON"))
}

/// The names of what was sent (the controller's dump: `resources`, type URL → resources)
/// against what the Envoy holds (its `/config_dump`), per type.
fn compare(sent: &serde_json::Value, held: &serde_json::Value) -> BTreeMap<String, Held> {
    let sent = &sent["resources"];
    let names = |resources: &serde_json::Value| -> Vec<String> {
        (resources.as_array().into_iter().flatten())
            .filter_map(|resource| resource["name"].as_str().map(str::to_string))
            .collect()
    };
    // Envoy's dump: one config per kind, each with its dynamic resources.
    let dumps = held["configs"].as_array().cloned().unwrap_or_default();
    let dump_of = |kind: &str| {
        dumps
            .iter()
            // By the message's full name: `.RoutesConfigDump`, not `ScopedRoutesConfigDump`.
            .find(|config| {
                (config["@type"].as_str()).is_some_and(|t| t.ends_with(&format!(".{kind}")))
            })
            .cloned()
            .unwrap_or_default()
    };
    let mut compared = BTreeMap::new();
    for (type_url, kind, list, inner) in [
        (
            type_url::CLUSTER,
            "ClustersConfigDump",
            "dynamic_active_clusters",
            "cluster",
        ),
        (
            type_url::LISTENER,
            "ListenersConfigDump",
            "dynamic_listeners",
            "",
        ),
        (
            type_url::ROUTE,
            "RoutesConfigDump",
            "dynamic_route_configs",
            "route_config",
        ),
        (
            type_url::SECRET,
            "SecretsConfigDump",
            "dynamic_active_secrets",
            "",
        ),
    ] {
        let sent_names = names(&sent[type_url]);
        let dump = dump_of(kind);
        let entries = dump[list].as_array().cloned().unwrap_or_default();
        let mut held_names = Vec::new();
        let mut rejected = Vec::new();
        for entry in &entries {
            let name = match inner {
                "" => entry["name"].as_str(),
                inner => entry[inner]["name"].as_str(),
            };
            let Some(name) = name else { continue };
            // A listener that failed its last update may hold no active state.
            if list != "dynamic_listeners" || !entry["active_state"].is_null() {
                held_names.push(name.to_string());
            }
            if let Some(details) = entry["error_state"]["details"].as_str() {
                rejected.push(format!("{name}: {details}"));
            }
        }
        let missing = (sent_names.iter())
            .filter(|name| !held_names.contains(name))
            .cloned()
            .collect();
        let extra = (held_names.iter())
            .filter(|name| !sent_names.contains(name))
            .cloned()
            .collect();
        compared.insert(
            type_url::short(type_url).to_string(),
            Held {
                sent: sent_names.len(),
                held: held_names.len(),
                missing,
                extra,
                rejected,
            },
        );
    }
    compared
}

/// The destinations served, with the route each came from, the VPC Lattice service the API
/// lists under the name, and the IAM auth policies VPC Lattice evaluates for it.
fn destinations(response: &ListProxiesResponse) -> String {
    let mut rows = vec![
        ["DESTINATION", "ROUTE", "SERVICE", "AUTH POLICIES"]
            .map(str::to_string)
            .to_vec(),
    ];
    let or_dash = |text: &str| match text {
        "" => "-".to_string(),
        text => text.to_string(),
    };
    for destination in &response.destinations {
        let policies = if destination.auth_policies.is_empty() {
            "none".to_string()
        } else {
            destination.auth_policies.join(", ")
        };
        // The service's name and ARN; the rest of its provenance is in the config dump.
        let service = destination.service.split("; ").next().unwrap_or_default();
        rows.push(vec![
            destination.destination.clone(),
            or_dash(&destination.route),
            or_dash(service),
            policies,
        ]);
    }
    aligned(&rows)
}

/// Rows as left-aligned columns two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(proxy: &ProxyStatus, type_url: &str) -> String {
    let Some(status) = proxy.types.iter().find(|t| t.type_url == type_url) else {
        return "NOT SENT".to_string();
    };
    describe(status)
}

fn describe(status: &TypeStatus) -> String {
    if !status.nacked_version.is_empty() {
        return format!("NACKED ({}): {}", status.nacked_version, status.nack_error);
    }
    if status.sent_version == status.acked_version {
        return format!("SYNCED ({})", status.sent_version);
    }
    format!(
        "STALE (sent {}, acked {})",
        status.sent_version, status.acked_version
    )
}
