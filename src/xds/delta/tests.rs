use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use prost::Message as _;

use super::*;
use crate::model::{Destination, ObjectRef, RouteOrigin, Settings, Trust};
use crate::translate::translate;
use crate::xds::events::StreamEvents;
use crate::xds::registry::Registry;

/// Snapshot `version` with virtual hosts on demand: each destination's route names `route`.
fn snapshot(version: u64, hosts: &[(&str, &str)], previous: Option<&Snapshot>) -> Arc<Snapshot> {
    let mut settings = Settings::default();
    settings.egress.on_demand = true;
    let mut mesh = settings.mesh();
    for (host, route) in hosts {
        let destination = Destination {
            host: host.to_string(),
            port: 443,
            tls: Some(Trust::SystemRoots),
            pinned: Vec::new(),
            protocol: Default::default(),
            route: Some(RouteOrigin {
                route: ObjectRef {
                    namespace: "apps".into(),
                    name: route.to_string(),
                },
                kind: Default::default(),
                auth_policies: Vec::new(),
            }),
            service: None,
            calls: Default::default(),
        };
        mesh.destinations
            .insert((*host).into(), Arc::new(destination));
    }
    Arc::new(Snapshot::new(version, &translate(&mesh), previous).unwrap())
}

fn request(type_url: &str, subscribe: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

/// The virtual hosts a response carries: name, domains and the first route's name.
fn virtual_hosts(response: &DeltaDiscoveryResponse) -> Vec<(String, Vec<String>, String)> {
    assert_eq!(response.type_url, type_url::VIRTUAL_HOST);
    (response.resources.iter())
        .map(|resource| {
            let host = VirtualHost::decode(resource.resource.value()).unwrap();
            assert_eq!(
                host.name, resource.name,
                "the resource is named as the host"
            );
            (host.name, host.domains, host.routes[0].name.clone())
        })
        .collect()
}

#[test]
fn virtual_hosts_are_sent_as_asked_for_and_changes_only_to_their_holders() {
    let registry = Registry::new();
    let proxy = StreamEvents::open(registry, "delta", None);
    let mut delta = Delta::new(Arc::new(Limits::default()));
    let first = snapshot(1, &[("a.example.com", "a"), ("b.example.com", "b")], None);
    delta.on_snapshot(Arc::clone(&first));

    // The route configuration names no host; Envoy's first VHDS request (no names) gets none.
    delta
        .on_request(request(type_url::ROUTE, &["egress"]), &proxy)
        .unwrap();
    let routes = delta.next_response(&proxy).unwrap();
    let route = RouteConfiguration::decode(routes.resources[0].resource.value()).unwrap();
    assert!(
        route.virtual_hosts.is_empty() && route.vhds.is_some(),
        "{route:?}"
    );
    delta.on_request(ack(&routes), &proxy).unwrap();
    delta
        .on_request(request(type_url::VIRTUAL_HOST, &[]), &proxy)
        .unwrap();
    let none = delta.next_response(&proxy).unwrap();
    assert!(none.resources.is_empty() && none.removed_resources.is_empty());
    delta.on_request(ack(&none), &proxy).unwrap();
    assert!(!delta.pending());

    // a, as asked for; then a host nothing names, made for it alone.
    delta
        .on_request(
            request(type_url::VIRTUAL_HOST, &["egress/a.example.com"]),
            &proxy,
        )
        .unwrap();
    let a = delta.next_response(&proxy).unwrap();
    let route_a = "destination a.example.com:443; route apps/a".to_string();
    let held_a = (
        "egress/a.example.com".to_string(),
        vec!["a.example.com".to_string()],
        route_a,
    );
    assert_eq!(virtual_hosts(&a), [held_a]);
    delta.on_request(ack(&a), &proxy).unwrap();
    delta
        .on_request(
            request(type_url::VIRTUAL_HOST, &["egress/unknown.test"]),
            &proxy,
        )
        .unwrap();
    let unknown = delta.next_response(&proxy).unwrap();
    let made = virtual_hosts(&unknown);
    assert_eq!(made.len(), 1, "only the new name: {made:?}");
    assert_eq!(made[0].0, "egress/unknown.test");
    assert_eq!(made[0].1, ["unknown.test"]);
    assert!(made[0].2.starts_with("default forward"), "{made:?}");
    delta.on_request(ack(&unknown), &proxy).unwrap();
    assert!(!delta.pending());

    // b changes: nothing for this stream. a changes: a alone, and the routes stay as they are.
    let second = snapshot(
        2,
        &[("a.example.com", "a"), ("b.example.com", "b2")],
        Some(&first),
    );
    delta.on_snapshot(Arc::clone(&second));
    assert!(delta.next_response(&proxy).is_none(), "b is not held");
    let third = snapshot(
        3,
        &[("a.example.com", "a2"), ("b.example.com", "b2")],
        Some(&second),
    );
    delta.on_snapshot(Arc::clone(&third));
    let changed = delta.next_response(&proxy).unwrap();
    let names: Vec<String> = virtual_hosts(&changed).into_iter().map(|h| h.2).collect();
    assert_eq!(names, ["destination a.example.com:443; route apps/a2"]);
    delta.on_request(ack(&changed), &proxy).unwrap();
    assert!(delta.next_response(&proxy).is_none());

    // a removed: its name is still answered, now by the default forward; unknown.test is
    // unchanged and not sent again.
    let fourth = snapshot(4, &[("b.example.com", "b2")], Some(&third));
    delta.on_snapshot(fourth);
    let removed = delta.next_response(&proxy).unwrap();
    let hosts = virtual_hosts(&removed);
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0].0, "egress/a.example.com");
    assert!(hosts[0].2.starts_with("default forward"), "{hosts:?}");
}
