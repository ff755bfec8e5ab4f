use serde_json::json;

use super::*;

fn config(signing: SigningMode) -> InjectConfig {
    InjectConfig {
        image: "lattice-xds:test".to_string(),
        envoy_image: "envoyproxy/envoy:v1.40.0".to_string(),
        xds_address: "lattice-xds.lattice-xds.svc:18000".to_string(),
        egress_port: 8080,
        proxy_uid: 101,
        signing,
        region: Some("ap-northeast-2".to_string()),
        signer_probe_port: 9003,
    }
}

fn pod(annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "client", "labels": { "app": "client" }, "annotations": annotations },
        "spec": { "containers": [{ "name": "app", "image": "curl" }] }
    })
}

#[test]
fn opting_in_and_out() {
    let walkthrough = pod(json!({ WALKTHROUGH_INJECT_ANNOTATION: "true" }));
    assert_eq!(decide(&walkthrough, false), Decision::Inject);
    let spelt_right = pod(json!({ INJECT_ANNOTATION: "True" }));
    assert_eq!(decide(&spelt_right, false), Decision::Inject);
    assert_eq!(decide(&pod(json!({})), false), Decision::NotRequested);
    assert_eq!(decide(&pod(json!({})), true), Decision::Inject);
    let opted_out = pod(json!({ INJECT_ANNOTATION: "false" }));
    assert_eq!(decide(&opted_out, true), Decision::OptedOut);
}

#[test]
fn injection_adds_the_sidecars_once() {
    let original = pod(json!({ INJECT_ANNOTATION: "true" }));
    let injected = inject(&original, &config(SigningMode::ExtProc));
    let names: Vec<&str> = injected["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lattice-xds-redirect",
            "lattice-xds-bootstrap",
            "lattice-xds-envoy",
            "lattice-xds-signer"
        ]
    );
    assert_eq!(
        injected["spec"]["containers"],
        original["spec"]["containers"]
    );
    assert_eq!(
        injected["metadata"]["annotations"][INJECTED_ANNOTATION],
        "true"
    );
    let bootstrap = &injected["spec"]["initContainers"][1]["args"];
    assert!(
        bootstrap
            .to_string()
            .contains("$(POD_NAME).$(POD_NAMESPACE)"),
        "{bootstrap}"
    );
    assert!(bootstrap.to_string().contains("\"client\""), "{bootstrap}");
    assert_eq!(decide(&injected, true), Decision::AlreadyInjected);
}

#[test]
fn the_native_mode_needs_no_signer() {
    let injected = inject(&pod(json!({})), &config(SigningMode::Native));
    let text = injected["spec"]["initContainers"].to_string();
    assert!(!text.contains("lattice-xds-signer"), "{text}");
    assert!(text.contains("lattice-xds-envoy"), "{text}");
}
