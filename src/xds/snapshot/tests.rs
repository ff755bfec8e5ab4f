use envoy_types::pb::envoy::config::cluster::v3::Cluster;

use super::*;
use crate::model::{Destination, ObjectRef, RouteOrigin, Settings, Trust};
use crate::translate::Host;
use crate::translate::translate;

/// Destinations on the system roots; pinned ones get a cluster of their own.
pub(crate) fn mesh_with(hosts: &[&str], pinned: bool) -> Resources {
    let mut mesh = Settings::default().mesh();
    for host in hosts {
        let destination = Destination {
            host: host.to_string(),
            port: 443,
            tls: Some(Trust::SystemRoots),
            pinned: (pinned
                .then(|| "127.0.0.1:8443".parse().unwrap())
                .into_iter()
                .collect()),
            protocol: Default::default(),
            route: Some(RouteOrigin {
                route: ObjectRef {
                    namespace: "apps".into(),
                    name: "demo".into(),
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
    translate(&mesh)
}

#[test]
fn a_route_to_a_missing_cluster_is_inconsistent() {
    let mut resources = mesh_with(&["a.example.com"], true);
    resources
        .clusters
        .retain(|cluster| !cluster.name.contains("a.example.com"));
    let error = Snapshot::new(1, &resources, None).unwrap_err();
    assert!(
        matches!(error, Inconsistent::Dangling { kind: "CDS", .. }),
        "{error}"
    );
}

#[test]
fn a_cluster_defined_twice_is_inconsistent() {
    let mut resources = mesh_with(&[], false);
    resources.clusters.push(Cluster {
        name: "twice".into(),
        ..Default::default()
    });
    resources.clusters.push(Cluster {
        name: "twice".into(),
        ..Default::default()
    });
    assert_eq!(
        Snapshot::new(1, &resources, None).unwrap_err(),
        Inconsistent::Duplicate {
            kind: "CDS".into(),
            name: "twice".into()
        }
    );
}

#[test]
fn unchanged_types_keep_their_version() {
    let first = Snapshot::new(1, &mesh_with(&["a.example.com"], true), None).unwrap();
    let second = Snapshot::new(
        2,
        &mesh_with(&["a.example.com", "b.example.com"], true),
        Some(&first),
    )
    .unwrap();
    assert_eq!(
        second.types[type_url::LISTENER].version,
        "1",
        "the listener did not change"
    );
    assert_eq!(second.types[type_url::CLUSTER].version, "2");
    assert_eq!(second.types[type_url::ROUTE].version, "2");
    let kept = &first.types[type_url::CLUSTER].resources["lattice|a.example.com|443"];
    let again = &second.types[type_url::CLUSTER].resources["lattice|a.example.com|443"];
    assert_eq!(
        kept.version, again.version,
        "an unchanged resource keeps its Delta version"
    );
}

#[test]
fn destinations_without_settings_of_their_own_share_one_cluster() {
    let first = Snapshot::new(1, &mesh_with(&["a.example.com"], false), None).unwrap();
    let hosts: Vec<String> = (0..100).map(|n| format!("h{n}.example.com")).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let second = Snapshot::new(2, &mesh_with(&hosts, false), Some(&first)).unwrap();
    let clusters = &second.types[type_url::CLUSTER];
    let destination_clusters: Vec<&String> = clusters
        .resources
        .keys()
        .filter(|name| !name.starts_with("lattice-xds-signer"))
        .filter(|name| name.as_str() != crate::translate::ORIGINAL_DESTINATION)
        .collect();
    assert_eq!(destination_clusters, ["lattice-tls|system-roots"]);
    assert_eq!(clusters.version, "1", "adding destinations left CDS alone");
    assert_eq!(second.types[type_url::ROUTE].version, "2");
}

/// A resource's version is the same in every build and every Rust release (the first 64 bits of
/// its SHA-256, as `sha256sum` prints them), so an upgraded controller resends nothing.
#[test]
fn a_resource_version_is_the_start_of_its_sha256() {
    assert_eq!(
        super::content_version(b"route configuration bytes"),
        "bf76ab36e7e197ea"
    );
}

/// A change to one destination makes its virtual host alone again; every other one is the
/// previous snapshot's, the same bytes at the same version.
#[test]
fn only_the_changed_destination_is_translated_and_packed_again() {
    let mesh = |hosts: &[(&str, u16)]| {
        let mut mesh = Settings::default().mesh();
        mesh.egress.on_demand = true;
        for (host, port) in hosts {
            let destination = Destination {
                host: host.to_string(),
                port: *port,
                tls: Some(Trust::SystemRoots),
                pinned: Vec::new(),
                protocol: Default::default(),
                route: None,
                service: None,
                calls: Default::default(),
            };
            mesh.destinations
                .insert((*host).into(), Arc::new(destination));
        }
        mesh
    };
    let before = mesh(&[("a.example.com", 443), ("b.example.com", 443)]);
    let first = Snapshot::new(1, &crate::translate::translate(&before), None).unwrap();
    let after = mesh(&[("a.example.com", 443), ("b.example.com", 8443)]);
    let resources = crate::translate::translate_from(&after, Some(&before));
    let names = |hosts: &[Host]| {
        let (made, kept): (Vec<&Host>, Vec<&Host>) =
            hosts.iter().partition(|host| matches!(host, Host::Made(_)));
        let names = |hosts: Vec<&Host>| {
            hosts
                .iter()
                .map(|host| host.name().to_string())
                .collect::<Vec<_>>()
        };
        (names(made), names(kept))
    };
    let on_demand = resources.on_demand.as_ref().unwrap();
    let (made, kept) = names(&on_demand.virtual_hosts);
    assert_eq!(made, ["egress/b.example.com"]);
    assert_eq!(kept, ["egress/a.example.com"]);
    // The full route table the same way, beside its catch-all, which is always made.
    let (made, kept) = names(&resources.routes[0].virtual_hosts);
    assert_eq!(made, ["b.example.com", "default-forward"]);
    assert_eq!(kept, ["a.example.com"]);

    let second = Snapshot::new(2, &resources, Some(&first)).unwrap();
    let hosts = |snapshot: &Snapshot| Arc::clone(&snapshot.incremental[type_url::VIRTUAL_HOST]);
    let (old, new) = (hosts(&first), hosts(&second));
    let (old_a, new_a) = (
        &old.resources["egress/a.example.com"],
        &new.resources["egress/a.example.com"],
    );
    assert_eq!(new_a.version, old_a.version);
    assert_eq!(
        new_a.packed.bytes().as_ptr(),
        old_a.packed.bytes().as_ptr(),
        "kept, not packed again"
    );
    let b = "egress/b.example.com";
    assert_ne!(new.resources[b].version, old.resources[b].version);
    // The result is what a whole translation gives, for the full table too: its encoding is
    // spliced from the kept host's bytes and the made ones'.
    let whole = Snapshot::new(2, &crate::translate::translate(&after), Some(&first)).unwrap();
    assert_eq!(hosts(&whole).resources, new.resources);
    let table = |snapshot: &Snapshot| snapshot.types[type_url::ROUTE].resources["egress"].clone();
    assert_eq!(table(&second), table(&whole));
    assert_ne!(table(&second).version, table(&first).version);
    let decoded = RouteConfiguration::decode(table(&second).packed.value()).unwrap();
    let expected = crate::translate::translate(&after).routes[0].configuration();
    assert_eq!(Some(decoded), expected);

    // Kept from a snapshot that lacks it: inconsistent, and the previous one stays served.
    let error = Snapshot::new(3, &resources, None).unwrap_err();
    assert!(matches!(error, Inconsistent::NotKept { .. }), "{error}");
}

/// A full route table whose hosts did not change is the previous snapshot's, bytes and version,
/// and a kept host missing from the previous table is inconsistent.
#[test]
fn an_unchanged_route_table_is_the_previous_one() {
    let resources = mesh_with(&["a.example.com"], false);
    let first = Snapshot::new(1, &resources, None).unwrap();
    let mut kept = resources.clone();
    for host in &mut kept.routes[0].virtual_hosts {
        if host.name() == "a.example.com" {
            *host = Host::Kept("a.example.com".into());
        }
    }
    let second = Snapshot::new(2, &kept, Some(&first)).unwrap();
    assert!(Arc::ptr_eq(
        &first.types[type_url::ROUTE],
        &second.types[type_url::ROUTE]
    ));
    assert!(Arc::ptr_eq(
        &first.tables["egress"],
        &second.tables["egress"]
    ));

    let error = Snapshot::new(2, &kept, None).unwrap_err();
    assert_eq!(
        error,
        Inconsistent::NotKept {
            name: "a.example.com".into()
        }
    );
}

/// Two virtual hosts of one name in a route table: inconsistent, as Envoy would reject it.
#[test]
fn a_virtual_host_listed_twice_is_inconsistent() {
    let mut resources = mesh_with(&["a.example.com", "b.example.com"], false);
    let hosts = &mut resources.routes[0].virtual_hosts;
    let twice = hosts[0].clone();
    hosts.push(twice);
    let error = Snapshot::new(1, &resources, None).unwrap_err();
    assert!(
        matches!(&error, Inconsistent::Duplicate { name, .. } if name == "a.example.com"),
        "{error}"
    );
}
