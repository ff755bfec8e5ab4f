//! Sidecar-like ADS clients: each stream on its own connection, subscribing as Envoy does
//! (clusters and listeners by wildcard, then the egress route configuration once listeners
//! arrive) and ACKing every response. Each stream counts the route configurations it receives;
//! with virtual hosts on demand, the virtual hosts, of the hosts it asks for once the route
//! configuration has come.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use lattice_xds::xds::type_url;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// The route configuration every sidecar asks for by name.
const EGRESS: &str = "egress";

/// Which variant of ADS the streams speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Delta,
    Sotw,
    /// Incremental, with virtual hosts on demand (`--on-demand-hosts true`).
    OnDemand,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Delta => "delta",
            Self::Sotw => "sotw",
            Self::OnDemand => "on-demand",
        })
    }
}

/// What one stream has seen: how many route configurations, and when the last one came.
#[derive(Default)]
pub struct Progress {
    pub routes: AtomicU32,
    pub last: Mutex<Option<Instant>>,
    /// Why the stream ended, if it did.
    pub ended: Mutex<Option<String>>,
}

impl Progress {
    async fn route_received(&self) {
        *self.last.lock().await = Some(Instant::now());
        self.routes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Opens one stream to `address` and serves it in the background. With virtual hosts on
/// demand it asks for the virtual hosts of `hosts`.
pub async fn open(
    address: &str,
    protocol: Protocol,
    node: String,
    hosts: Vec<String>,
) -> anyhow::Result<Arc<Progress>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(30));
    let channel = endpoint.connect().await?;
    let client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let progress = Arc::new(Progress::default());
    let watched = Arc::clone(&progress);
    tokio::spawn(async move {
        let result = match protocol {
            Protocol::Delta => delta(client, node, Vec::new(), Arc::clone(&watched)).await,
            Protocol::OnDemand => delta(client, node, hosts, Arc::clone(&watched)).await,
            Protocol::Sotw => sotw(client, node, Arc::clone(&watched)).await,
        };
        let why = match result {
            Ok(()) => "closed by the server".to_string(),
            Err(error) => format!("{error:#}"),
        };
        *watched.ended.lock().await = Some(why);
    });
    Ok(progress)
}

type Client = AggregatedDiscoveryServiceClient<tonic::transport::Channel>;

fn node(id: String) -> Option<Node> {
    Some(Node {
        id,
        cluster: "bench".to_string(),
        ..Default::default()
    })
}

async fn delta(
    mut client: Client,
    id: String,
    hosts: Vec<String>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let on_demand = !hosts.is_empty();
    let (requests, outgoing) = mpsc::channel(16);
    let subscribe = |type_url: &str, names: &[&str]| DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let mut first = subscribe(type_url::CLUSTER, &["*"]);
    first.node = node(id);
    requests.send(first).await?;
    requests.send(subscribe(type_url::LISTENER, &["*"])).await?;
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let mut routes_requested = false;
    let mut hosts_requested = false;
    while let Some(response) = responses.message().await? {
        let DeltaDiscoveryResponse {
            type_url, nonce, ..
        } = &response;
        requests
            .send(DeltaDiscoveryRequest {
                type_url: type_url.clone(),
                response_nonce: nonce.clone(),
                ..Default::default()
            })
            .await?;
        if type_url == type_url::LISTENER && !routes_requested {
            routes_requested = true;
            requests.send(subscribe(type_url::ROUTE, &[EGRESS])).await?;
        }
        if type_url == type_url::ROUTE && !response.resources.is_empty() {
            if !on_demand {
                progress.route_received().await;
            } else if !hosts_requested {
                // In one request, so that the first answer carries them all.
                hosts_requested = true;
                let names: Vec<String> = hosts.iter().map(|h| format!("{EGRESS}/{h}")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                requests
                    .send(subscribe(type_url::VIRTUAL_HOST, &names))
                    .await?;
            }
        }
        if type_url == type_url::VIRTUAL_HOST && !response.resources.is_empty() {
            progress.route_received().await;
        }
    }
    Ok(())
}

async fn sotw(mut client: Client, id: String, progress: Arc<Progress>) -> anyhow::Result<()> {
    let (requests, outgoing) = mpsc::channel(16);
    let ask = |type_url: &str, names: &[&str]| DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let mut first = ask(type_url::CLUSTER, &[]);
    first.node = node(id);
    requests.send(first).await?;
    requests.send(ask(type_url::LISTENER, &[])).await?;
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let mut routes_requested = false;
    while let Some(response) = responses.message().await? {
        let DiscoveryResponse {
            type_url,
            nonce,
            version_info,
            ..
        } = &response;
        let names: &[&str] = if type_url == type_url::ROUTE {
            &[EGRESS]
        } else {
            &[]
        };
        let mut ack = ask(type_url, names);
        ack.response_nonce = nonce.clone();
        ack.version_info = version_info.clone();
        requests.send(ack).await?;
        if type_url == type_url::LISTENER && !routes_requested {
            routes_requested = true;
            requests.send(ask(type_url::ROUTE, &[EGRESS])).await?;
        }
        if type_url == type_url::ROUTE && !response.resources.is_empty() {
            progress.route_received().await;
        }
    }
    Ok(())
}

/// Every resource a sidecar is served, fetched once over state-of-the-world ADS: one
/// response per type, as the comparison peer loads them.
pub async fn fetch_all(address: &str) -> anyhow::Result<Vec<DiscoveryResponse>> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
        .await?
        .max_decoding_message_size(usize::MAX);
    let (requests, outgoing) = mpsc::channel(8);
    let mut fetched = Vec::new();
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    for (type_url, names) in [
        (type_url::CLUSTER, vec![]),
        (type_url::LISTENER, vec![]),
        (type_url::ROUTE, vec![EGRESS.to_string()]),
    ] {
        requests
            .send(DiscoveryRequest {
                type_url: type_url.to_string(),
                resource_names: names,
                node: node("bench-fetch".to_string()),
                ..Default::default()
            })
            .await?;
        let response = responses
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream ended before {type_url}"))?;
        anyhow::ensure!(response.type_url == type_url, "expected {type_url}");
        fetched.push(response);
    }
    Ok(fetched)
}
