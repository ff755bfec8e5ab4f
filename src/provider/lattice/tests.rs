use super::checked_host;

#[test]
fn host_names_are_lower_cased_and_checked() {
    assert_eq!(
        checked_host("Demo-Cluster2.Example.COM").unwrap(),
        "demo-cluster2.example.com"
    );
    for bad in [
        "*.example.com",
        "10.0.0.1",
        "-a.example.com",
        "a..example.com",
        "a_b.example.com",
        "",
    ] {
        assert!(checked_host(bad).is_err(), "{bad:?} was accepted");
    }
    let long_label = format!("{}.example.com", "a".repeat(64));
    assert!(checked_host(&long_label).is_err());
}

#[test]
fn listener_host_names_contain_exact_and_wildcard_names() {
    use super::attach::within;
    assert!(within("pay.example.com", "PAY.example.com"));
    assert!(within("*.example.com", "pay.example.com"));
    assert!(within("*.example.com", "a.b.example.com"));
    assert!(!within("*.example.com", "example.com"));
    assert!(!within("*.example.com", "api.other-domain.net"));
    assert!(!within("*.example.com", "evilexample.com"));
    assert!(!within("pay.example.com", "api.example.com"));
}

#[test]
fn an_assigned_name_counts_only_for_the_routes_own_service() {
    use super::assigned_name;
    use crate::model::ObjectRef;
    let route = |namespace: &str, name: &str| ObjectRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let seed =
        "demo-cluster1-apps-05a011bb3aacd80e4.7d67968.vpc-lattice-svcs.ap-northeast-2.on.aws";
    assert_eq!(
        assigned_name(seed, &route("apps", "demo-cluster1")).unwrap(),
        seed
    );
    // Another route's, an unassigned shape, and an id that is not one.
    assert!(assigned_name(seed, &route("tenant-x", "demo-cluster1")).is_err());
    assert!(
        assigned_name(
            "demo-cluster1-apps.example.com",
            &route("apps", "demo-cluster1")
        )
        .is_err()
    );
    let not_an_id = seed.replace("05a011bb3aacd80e4", "extra-05a011bb3aacd80e4");
    assert!(assigned_name(&not_an_id, &route("apps", "demo-cluster1")).is_err());
    // Long names are cut as the AWS Gateway API Controller cuts them: 20 and 18 characters,
    // without a dash at either end.
    let long = route("a-namespace-longer-than-18", "abcdefghijklmnopqrs-and-more");
    let name = "abcdefghijklmnopqrs-a-namespace-longer-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws";
    assert!(
        assigned_name(name, &long).is_ok(),
        "{:?}",
        assigned_name(name, &long)
    );
}

#[test]
fn the_vpc_lattice_api_decides_who_owns_a_discovered_name() {
    use std::sync::Arc;

    use crate::model::{AuthSetting, Protocol, ServiceOrigin, Settings};
    use crate::provider::Observed;
    use crate::provider::discovery::{Listener, Service};

    let gateway = include_str!("../../../examples/cluster1/gateway.yaml");
    let route = |namespace: &str, name: &str, host: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             spec:\n  hostnames: [{host}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
             \x20   sectionName: https-listener-with-custom-domain\n"
        )
    };
    let service = |name: &str, domain: &str| Service {
        id: format!("svc-{name}"),
        origin: Arc::new(ServiceOrigin {
            name: name.to_string(),
            arn: format!("arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-{name}"),
            account: "111122223333".to_string(),
            auth: AuthSetting::default(),
            networks: Vec::new(),
            listeners_read: true,
        }),
        custom_domain: Some(domain.to_string()),
        assigned_name: None,
        listeners: vec![Listener {
            protocol: Protocol::Http,
            tls: true,
            port: 443,
        }],
    };
    let mut observed = Observed::default();
    super::super::manifests::parse("gateway.yaml", gateway, &mut observed);
    // The service VPC Lattice made of apps/billing, a tenant's route naming its host (first in
    // the Gateway API order, so it would win without the API), and apps/billing itself.
    super::super::manifests::parse(
        "tenant.yaml",
        &route("abuse", "grab", "billing.example.com"),
        &mut observed,
    );
    super::super::manifests::parse(
        "billing.yaml",
        &route("apps", "billing", "billing.example.com"),
        &mut observed,
    );
    let discovered = [
        service("billing-apps", "billing.example.com"),
        service("ledger-finance", "ledger.example.com"),
        service("ledger-other", "ledger.example.com"),
    ];
    let (mesh, invalid) = super::build(&observed.inputs, &discovered, &Settings::default());

    let billing = &mesh.destinations["billing.example.com"];
    assert_eq!(
        billing.route.as_ref().unwrap().route.to_string(),
        "apps/billing"
    );
    assert_eq!(billing.service.as_ref().unwrap().name, "billing-apps");
    let ledger = &mesh.destinations["ledger.example.com"];
    assert!(ledger.route.is_none());
    assert_eq!(ledger.service.as_ref().unwrap().name, "ledger-finance");

    let reasons: Vec<String> = invalid
        .iter()
        .map(|i| {
            format!(
                "{} {}: {}",
                i.kind,
                i.object.clone().unwrap_or_default(),
                i.reason
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("HTTPRoute abuse/grab: hostname billing.example.com belongs to VPC Lattice service billing-apps")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("svc-ledger-other")
            && r.contains("also the name of VPC Lattice service ledger-finance")),
        "{reasons:#?}"
    );
}

/// A rebuild works out again only the routes whose objects changed: an unchanged route's
/// destination is the previous mesh's own, and the mesh is what a build from nothing gives,
/// conflicts included. A changed gateway works out every route again.
#[test]
fn a_rebuild_works_out_only_the_changed_routes() {
    use super::{Builder, build};
    use crate::model::Settings;
    use crate::provider::{Observed, manifests};
    use std::sync::Arc;

    let parsed = |text: &str| {
        let mut observed = Observed::default();
        manifests::parse("test.yaml", text, &mut observed);
        assert!(observed.invalid.is_empty(), "{:?}", observed.invalid);
        observed.inputs
    };
    let route = |name: &str, host: &str| {
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  hostnames:\n  - {host}\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n    sectionName: https-listener-with-custom-domain\n"
        );
        parsed(&text).routes.remove(0)
    };
    let gateway = std::fs::read_to_string("examples/cluster1/gateway.yaml").unwrap();
    let mut inputs = parsed(&gateway);
    let (a, b) = (route("a", "a.example.com"), route("b", "b.example.com"));
    // Newer by name, and claiming a's host: refused.
    let z = route("z", "a.example.com");
    inputs.routes = vec![Arc::clone(&a), Arc::clone(&b), Arc::clone(&z)];
    let settings = Settings::default();
    let mut builder = Builder::default();
    let (first, _) = builder.build(&inputs, &[], &settings);

    inputs.routes[1] = route("b", "b2.example.com");
    let (second, invalid) = builder.build(&inputs, &[], &settings);
    let hosts: Vec<&str> = second.destinations.keys().map(|host| &**host).collect();
    assert_eq!(hosts, ["a.example.com", "b2.example.com"]);
    assert!(Arc::ptr_eq(
        &first.destinations["a.example.com"],
        &second.destinations["a.example.com"]
    ));
    assert_eq!(
        (second.clone(), invalid.clone()),
        build(&inputs, &[], &settings)
    );
    assert!(
        invalid
            .iter()
            .any(|report| report.object.as_deref() == Some("apps/z")),
        "{invalid:?}"
    );

    inputs.gateways = parsed(&gateway).gateways;
    let (third, _) = builder.build(&inputs, &[], &settings);
    assert_eq!(third, second);
    assert!(!Arc::ptr_eq(
        &second.destinations["a.example.com"],
        &third.destinations["a.example.com"]
    ));
}

/// Route timeouts are Gateway API durations (GEP-2257): up to four parts of up to five digits
/// and a unit each; anything else is refused with the reason.
#[test]
fn timeouts_read_gateway_api_durations() {
    use super::gateway_duration;
    use std::time::Duration;

    let parsed = |text: &str| gateway_duration(text);
    assert_eq!(parsed("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parsed("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parsed("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parsed("1m1s1ms0h"), Ok(Duration::from_millis(61_001)));
    assert_eq!(parsed("0s"), Ok(Duration::ZERO));
    for refused in [
        "",
        "10",
        "s",
        "1d",
        "5 seconds",
        "123456s",
        "1h1m1s1ms1h",
        "-1s",
        "1.5s",
    ] {
        assert!(
            parsed(refused).is_err(),
            "{refused:?} was read as a duration"
        );
    }
}

#[test]
fn a_rules_retry_is_read_and_its_bad_fields_reported() {
    use super::rule_retry;
    use gateway_api::experimental::httproutes::HttpRouteRulesRetry;
    use std::time::Duration;

    let retry = |attempts, codes: &[i64], backoff: &str| HttpRouteRulesRetry {
        attempts,
        codes: Some(codes.to_vec()),
        backoff: Some(backoff.to_string()),
    };
    let mut refusals = Vec::new();
    let (attempts, read) =
        rule_retry(&retry(Some(3), &[500, 502], "100ms"), &mut refusals).expect("a retry");
    assert_eq!(attempts, Some(3));
    assert_eq!(read.codes.iter().collect::<Vec<_>>(), [500, 502]);
    assert_eq!(read.backoff, Some(Duration::from_millis(100)));
    assert!(refusals.is_empty(), "{refusals:?}");

    // Too many attempts, a code that is not a failure, a backoff that is not a duration: each
    // reported, and the rest kept; no code left is a 503.
    let (attempts, read) =
        rule_retry(&retry(Some(50), &[200], "soon"), &mut refusals).expect("a retry");
    assert_eq!(attempts, None);
    assert_eq!(read.codes.iter().collect::<Vec<_>>(), [503]);
    assert_eq!(read.backoff, None);
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals[0].contains("retry.attempts 50"), "{refusals:?}");
    assert!(refusals[1].contains("retry.codes 200"), "{refusals:?}");
    assert!(
        refusals[2].contains("retry.backoff \"soon\""),
        "{refusals:?}"
    );
}
