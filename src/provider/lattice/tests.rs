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
