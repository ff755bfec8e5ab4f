//! A raw ADS client, as Envoy speaks it: requests are sent and responses read one by one, so a
//! test can ACK, NACK or stay silent where it wants.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A state-of-the-world request of `node` for `names` of `type_url`.
pub fn request(node: &str, type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        node: Some(Node {
            id: node.to_string(),
            cluster: "raw".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub struct Sotw {
    pub requests: mpsc::Sender<DiscoveryRequest>,
    pub responses: tonic::Streaming<DiscoveryResponse>,
}

impl Sotw {
    pub async fn open(port: u16) -> Sotw {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .expect("connect to ADS");
        let (requests, outgoing) = mpsc::channel(8);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(outgoing))
            .await
            .expect("open ADS stream")
            .into_inner();
        Sotw {
            requests,
            responses,
        }
    }

    pub async fn send(&self, request: DiscoveryRequest) {
        self.requests.send(request).await.expect("send request");
    }

    pub async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("a response within 10 s")
            .expect("stream open")
            .expect("a response")
    }
}
