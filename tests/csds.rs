//! CSDS on the controller's admin gRPC port, read with a raw client: a real Envoy's resources
//! are ACKED at the versions `proxy-status` shows, one per resource it was sent; a raw ADS
//! client's rejected clusters are NACKED with its error and a route name it asked for that does
//! not exist is REQUESTED; node matchers select nodes; the streaming call answers each request.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ConfigStatus,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use envoy_types::pb::google::rpc::Status;
use lattice_xds::xds::type_url;
use support::ads::Sotw;
use support::envoy::Envoy;
use support::eventually;
use support::process::{Controller, synced, type_status};
use tonic::transport::Channel;

const ENVOY: &str = "csds-envoy";
const RAW: &str = "csds-raw";

async fn csds(controller: &Controller) -> ClientStatusDiscoveryServiceClient<Channel> {
    ClientStatusDiscoveryServiceClient::connect(controller.admin_url(""))
        .await
        .expect("connect to the admin gRPC port")
}

fn node_id(matcher: MatchPattern) -> NodeMatcher {
    NodeMatcher {
        node_id: Some(StringMatcher {
            match_pattern: Some(matcher),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn fetch(controller: &Controller, matchers: Vec<NodeMatcher>) -> Vec<ClientConfig> {
    let request = ClientStatusRequest {
        node_matchers: matchers,
        ..Default::default()
    };
    csds(controller)
        .await
        .fetch_client_status(request)
        .await
        .expect("FetchClientStatus")
        .into_inner()
        .config
}

fn of_type<'a>(config: &'a ClientConfig, type_url: &str) -> Vec<&'a GenericXdsConfig> {
    config
        .generic_xds_configs
        .iter()
        .filter(|resource| resource.type_url == type_url)
        .collect()
}

fn node<'a>(configs: &'a [ClientConfig], id: &str) -> &'a ClientConfig {
    configs
        .iter()
        .find(|config| config.node.as_ref().is_some_and(|node| node.id == id))
        .unwrap_or_else(|| panic!("no ClientConfig for {id}"))
}

#[tokio::test]
async fn csds_reports_each_resource_as_proxy_status_does() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let controller = Controller::start(
        dir.path(),
        &[
            format!("--manifests={}", manifests.display()),
            "--signing=none".to_string(),
            "--resolve=demo-cluster1.example.com=127.0.0.1:9".to_string(),
            "--resolve=demo-cluster2.example.com=127.0.0.1:9".to_string(),
        ],
    )
    .await;
    let _envoy = Envoy::start(dir.path(), ENVOY, controller.xds_port, "sotw").await;
    let types = ["LDS", "CDS", "RDS"];
    let proxies = eventually("Envoy to ACK", Duration::from_secs(30), || async {
        let proxies = controller.proxies().await;
        synced(&proxies, ENVOY, &types).then_some(proxies)
    })
    .await;

    // A raw client rejects the clusters and asks for a route configuration that does not exist.
    let mut raw = Sotw::open(controller.xds_port).await;
    raw.send(support::ads::request(RAW, type_url::CLUSTER, &[]))
        .await;
    let clusters = raw.next().await;
    let mut nack = support::ads::request(RAW, type_url::CLUSTER, &[]);
    nack.response_nonce = clusters.nonce.clone();
    nack.error_detail = Some(Status {
        code: 3,
        message: "cluster rejected for the test".to_string(),
        ..Default::default()
    });
    raw.send(nack).await;
    raw.send(support::ads::request(
        RAW,
        type_url::ROUTE,
        &["no-such-route"],
    ))
    .await;
    eventually("the raw client's NACK", Duration::from_secs(10), || async {
        let proxies = controller.proxies().await;
        type_status(&proxies, RAW, "CDS")
            .filter(|cds| cds["nacked_version"] != "")
            .cloned()
    })
    .await;

    let configs = fetch(&controller, Vec::new()).await;
    assert_eq!(configs.len(), 2, "one ClientConfig per connected node");

    // The Envoy: every resource it was sent is ACKED at the version proxy-status shows.
    let envoy = node(&configs, ENVOY);
    let dump =
        support::http::get_url(&controller.admin_url(&format!("/debug/config_dump?node={ENVOY}")))
            .await
            .expect("config dump");
    let dump: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    for (short, type_url) in [
        ("LDS", type_url::LISTENER),
        ("CDS", type_url::CLUSTER),
        ("RDS", type_url::ROUTE),
    ] {
        let acked = type_status(&proxies, ENVOY, short).unwrap()["acked_version"]
            .as_str()
            .unwrap()
            .to_string();
        let resources = of_type(envoy, type_url);
        let names: BTreeSet<&str> = resources.iter().map(|r| r.name.as_str()).collect();
        let sent: BTreeSet<&str> = dump["resources"][type_url]
            .as_array()
            .unwrap()
            .iter()
            .map(|resource| resource["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, sent, "{short}: CSDS lists what the node was sent");
        for resource in resources {
            assert_eq!(
                resource.client_status(),
                ClientResourceStatus::Acked,
                "{short} {}",
                resource.name
            );
            assert_eq!(resource.config_status(), ConfigStatus::Synced);
            assert_eq!(resource.version_info, acked, "{short} {}", resource.name);
            assert!(resource.xds_config.is_some(), "contents are included");
        }
    }
    let described = envoy.node.as_ref().unwrap();
    assert_eq!(
        described.cluster, "demo-cluster1-v1",
        "the node as Envoy described itself"
    );

    // The raw client: its clusters NACKED with its error, the unknown route REQUESTED.
    let raw_config = node(&configs, RAW);
    let rejected = of_type(raw_config, type_url::CLUSTER);
    assert!(!rejected.is_empty());
    for resource in rejected {
        assert_eq!(resource.client_status(), ClientResourceStatus::Nacked);
        assert_eq!(resource.config_status(), ConfigStatus::Error);
        assert_eq!(resource.version_info, "", "nothing was ever accepted");
        let error = resource.error_state.as_ref().expect("the error");
        assert_eq!(error.details, "cluster rejected for the test");
        assert_eq!(error.version_info, clusters.version_info);
    }
    let routes = of_type(raw_config, type_url::ROUTE);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].name, "no-such-route");
    assert_eq!(routes[0].client_status(), ClientResourceStatus::Requested);
    assert_eq!(routes[0].config_status(), ConfigStatus::NotSent);

    // Matchers select nodes; contents can be left out.
    let only_raw = fetch(
        &controller,
        vec![node_id(MatchPattern::Prefix("csds-r".into()))],
    )
    .await;
    assert_eq!(only_raw.len(), 1);
    assert_eq!(only_raw[0].node.as_ref().unwrap().id, RAW);
    let either = fetch(
        &controller,
        vec![
            node_id(MatchPattern::Exact(ENVOY.into())),
            node_id(MatchPattern::Suffix("-raw".into())),
        ],
    )
    .await;
    assert_eq!(either.len(), 2);
    assert!(
        fetch(
            &controller,
            vec![node_id(MatchPattern::Exact("nobody".into()))]
        )
        .await
        .is_empty()
    );
    let bare = csds(&controller)
        .await
        .fetch_client_status(ClientStatusRequest {
            node_matchers: vec![node_id(MatchPattern::Exact(ENVOY.into()))],
            exclude_resource_contents: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        bare.config[0]
            .generic_xds_configs
            .iter()
            .all(|r| r.xds_config.is_none())
    );

    // An unsupported matcher is refused, not ignored.
    let refused = csds(&controller)
        .await
        .fetch_client_status(ClientStatusRequest {
            node_matchers: vec![NodeMatcher {
                node_metadatas: vec![Default::default()],
                ..node_id(MatchPattern::Exact(ENVOY.into()))
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");

    // The streaming call answers each request on the stream.
    let (requests, outgoing) = tokio::sync::mpsc::channel(2);
    let mut answers = csds(&controller)
        .await
        .stream_client_status(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();
    for id in [ENVOY, RAW] {
        requests
            .send(ClientStatusRequest {
                node_matchers: vec![node_id(MatchPattern::Exact(id.into()))],
                ..Default::default()
            })
            .await
            .unwrap();
        let answer = answers.message().await.unwrap().expect("an answer");
        assert_eq!(answer.config.len(), 1);
        assert_eq!(answer.config[0].node.as_ref().unwrap().id, id);
    }
}
