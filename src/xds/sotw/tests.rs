use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use prost::Message as _;

use super::*;
use crate::xds::events::StreamEvents;
use crate::xds::registry::Registry;
use crate::xds::snapshot::tests::mesh_with;

/// A snapshot whose destinations each have a cluster of their own (they are pinned).
fn snapshot(version: u64, hosts: &[&str], previous: Option<&Snapshot>) -> Arc<Snapshot> {
    Arc::new(Snapshot::new(version, &mesh_with(hosts, true), previous).unwrap())
}

fn request(type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(response: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    let mut ack = request(&response.type_url, names);
    ack.response_nonce = response.nonce.clone();
    ack.version_info = response.version_info.clone();
    ack
}

/// The destination clusters a response carries (`lattice|host|443` → `host`).
fn clusters(response: &DiscoveryResponse) -> Vec<String> {
    if response.type_url != type_url::CLUSTER {
        return Vec::new();
    }
    let mut names: Vec<String> = response
        .resources
        .iter()
        .map(|any| Cluster::decode(any.value()).unwrap().name)
        .filter_map(|name| {
            Some(
                name.strip_prefix("lattice|")?
                    .strip_suffix("|443")?
                    .to_string(),
            )
        })
        .collect();
    names.sort();
    names
}

#[test]
fn clusters_added_during_a_transition_go_before_the_routes_that_use_them() {
    let registry = Registry::new();
    let proxy = StreamEvents::open(registry, "sotw", None);
    let mut sotw = Sotw::new(Arc::new(Limits::default()));
    let first = snapshot(1, &["a", "b"], None);
    sotw.on_snapshot(Arc::clone(&first));
    for (type_url, names) in [
        (type_url::CLUSTER, vec![]),
        (type_url::LISTENER, vec![]),
        (type_url::ROUTE, vec!["egress"]),
    ] {
        sotw.on_request(request(type_url, &names), &proxy).unwrap();
        let response = sotw.next_response(&proxy).unwrap();
        assert_eq!(response.type_url, type_url);
        sotw.on_request(ack(&response, &names), &proxy).unwrap();
    }
    assert!(!sotw.pending());

    // b goes and c comes: clusters first, with b kept while routes still use it.
    let second = snapshot(2, &["a", "c"], Some(&first));
    sotw.on_snapshot(Arc::clone(&second));
    let transition = sotw.next_response(&proxy).unwrap();
    assert_eq!(transition.type_url, type_url::CLUSTER);
    assert_eq!(clusters(&transition), ["a", "b", "c"]);
    sotw.on_request(ack(&transition, &[]), &proxy).unwrap();

    // Before the routes move, d appears: its cluster must come before any route naming it.
    let third = snapshot(3, &["a", "c", "d"], Some(&second));
    sotw.on_snapshot(third);
    let again = sotw.next_response(&proxy).unwrap();
    assert_eq!(again.type_url, type_url::CLUSTER, "d's cluster first");
    assert_eq!(clusters(&again), ["a", "b", "c", "d"], "b still kept");
    sotw.on_request(ack(&again, &[]), &proxy).unwrap();

    let mut order = Vec::new();
    while sotw.pending() {
        let response = sotw.next_response(&proxy).unwrap();
        let names: &[&str] = if response.type_url == type_url::ROUTE {
            &["egress"]
        } else {
            &[]
        };
        sotw.on_request(ack(&response, names), &proxy).unwrap();
        order.push((
            type_url::short(&response.type_url).to_string(),
            clusters(&response),
        ));
    }
    let types: Vec<&str> = order.iter().map(|(short, _)| short.as_str()).collect();
    assert_eq!(
        types,
        ["RDS", "CDS"],
        "routes move, then the kept cluster goes"
    );
    assert_eq!(order[1].1, ["a", "c", "d"]);
}
