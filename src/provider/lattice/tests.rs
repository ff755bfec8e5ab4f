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
