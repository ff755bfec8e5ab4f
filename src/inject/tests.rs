use serde_json::json;

use super::*;

/// The injection settings of the tests (the webhook's too).
pub(super) fn config(signing: SigningMode) -> InjectConfig {
    InjectConfig {
        image: "lattice-xds:test".to_string(),
        envoy_image: "envoyproxy/envoy:v1.40.0".to_string(),
        xds_address: "lattice-xds.lattice-xds.svc:18000".to_string(),
        egress_port: 8080,
        proxy_uid: 101,
        signing,
        region: Some("ap-northeast-2".to_string()),
        algorithm: SigningAlgorithm::SigV4,
        region_set: "*".to_string(),
        signer_probe_port: 9003,
        xds_token_audience: None,
        controller_namespace: "lattice-xds".to_string(),
        signer_sockets: Default::default(),
        resources: Default::default(),
        envoy: Default::default(),
        log_format: Default::default(),
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
    let injected = inject(&original, &config(SigningMode::ExtProc), None);
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
    let injected = inject(&pod(json!({})), &config(SigningMode::Native), None);
    let text = injected["spec"]["initContainers"].to_string();
    assert!(!text.contains("lattice-xds-signer"), "{text}");
    assert!(text.contains("lattice-xds-envoy"), "{text}");
}

#[test]
fn the_module_mode_signs_in_envoy_with_the_module_the_bootstrap_copies() {
    let mut config = config(SigningMode::Module);
    config.region = Some("eu-west-1".to_string());
    let injected = inject(&pod(json!({})), &config, None);
    let containers = injected["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "lattice-xds-redirect",
            "lattice-xds-bootstrap",
            "lattice-xds-envoy"
        ]
    );
    let args = containers[1]["args"].to_string();
    assert!(
        args.contains(r#""--module-dir","/etc/lattice-xds""#),
        "{args}"
    );
    let env = &containers[2]["env"];
    assert_eq!(
        env,
        &json!([
            { "name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "value": "/etc/lattice-xds" },
            { "name": "AWS_REGION", "value": "eu-west-1" },
        ])
    );
    // Envoy reads the module from the bootstrap volume it already mounts.
    let mounts = containers[2]["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/lattice-xds"), "{mounts}");
}

#[test]
fn authenticated_xds_gives_envoy_a_projected_token_and_the_bootstrap_the_ca() {
    let mut config = config(SigningMode::Native);
    config.xds_token_audience = Some("lattice-xds".to_string());
    let ca = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
    let injected = inject(&pod(json!({})), &config, Some(ca));
    let token = injected["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == TOKEN_VOLUME)
        .expect("a token volume");
    let projected = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projected["audience"], "lattice-xds");
    assert_eq!(projected["expirationSeconds"], TOKEN_SECONDS);
    let init = injected["spec"]["initContainers"].as_array().unwrap();
    let envoy = init
        .iter()
        .find(|c| c["name"] == "lattice-xds-envoy")
        .unwrap();
    assert!(
        envoy["volumeMounts"].to_string().contains(TOKEN_DIR),
        "{}",
        envoy["volumeMounts"]
    );
    let bootstrap = init
        .iter()
        .find(|c| c["name"] == "lattice-xds-bootstrap")
        .unwrap();
    assert!(bootstrap["args"].to_string().contains(TOKEN_FILE));
    let env = bootstrap["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "LATTICE_XDS_XDS_CA" && e["value"] == ca),
        "{env:?}"
    );
    // Without authentication there is neither.
    let plain = inject(&pod(json!({})), &self::config(SigningMode::Native), None);
    assert!(!plain.to_string().contains(TOKEN_VOLUME));
    assert!(!plain.to_string().contains("LATTICE_XDS_XDS_CA"));
}

#[test]
fn labels_opt_pods_in_and_out_and_host_network_pods_never() {
    let labelled = |value: &str| {
        let mut pod = pod(json!({}));
        pod["metadata"]["labels"][NAMESPACE_LABEL] = json!(value);
        pod
    };
    assert_eq!(decide(&labelled("enabled"), false), Decision::Inject);
    assert_eq!(decide(&labelled("disabled"), true), Decision::OptedOut);
    let mut annotated_out = labelled("enabled");
    annotated_out["metadata"]["annotations"][INJECT_ANNOTATION] = json!("false");
    assert_eq!(decide(&annotated_out, true), Decision::OptedOut);
    let mut host = pod(json!({}));
    host["spec"]["hostNetwork"] = json!(true);
    assert_eq!(decide(&host, true), Decision::HostNetwork);
    host["spec"]["hostNetwork"] = json!(false);
    assert_eq!(decide(&host, true), Decision::Inject);
}

#[test]
fn a_signer_on_unix_sockets_shares_their_directory_with_envoy() {
    let mut config = config(SigningMode::ExtProc);
    config.signer_sockets = SignerSockets {
        grpc: Some("/var/run/lattice-xds-signer/ext-proc.sock".to_string()),
        http: Some("/var/run/lattice-xds-signer/sign.sock".to_string()),
    };
    let injected = inject(&pod(json!({})), &config, None);
    let init = injected["spec"]["initContainers"].as_array().unwrap();
    let mounts_dir = |name: &str| {
        let container = init.iter().find(|c| c["name"] == name).unwrap();
        container["volumeMounts"]
            .to_string()
            .contains("/var/run/lattice-xds-signer")
    };
    assert!(mounts_dir("lattice-xds-envoy") && mounts_dir("lattice-xds-signer"));
    let signer = init
        .iter()
        .find(|c| c["name"] == "lattice-xds-signer")
        .unwrap();
    assert_eq!(
        signer["command"],
        json!(["/usr/local/bin/lattice-xds-signer"])
    );
    assert_eq!(
        signer["args"],
        json!([
            "--grpc-socket",
            "/var/run/lattice-xds-signer/ext-proc.sock",
            "--http-socket",
            "/var/run/lattice-xds-signer/sign.sock",
            "--socket-peer-uid",
            "101"
        ])
    );
    assert!(
        injected["spec"]["volumes"]
            .to_string()
            .contains(SOCKET_VOLUME)
    );
    // The native mode has no signer, and no socket directory.
    config.signing = SigningMode::Native;
    let native = inject(&pod(json!({})), &config, None);
    assert!(!native.to_string().contains(SOCKET_VOLUME));
}

#[test]
fn the_sidecars_resources_come_from_the_configuration() {
    let mut config = config(SigningMode::ExtProc);
    config.resources = r#"{
        "envoy": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "signer": {"limits": {"memory": "64Mi"}},
        "init": {}
    }"#
    .parse()
    .unwrap();
    let injected = inject(&pod(json!({})), &config, None);
    let resources = |name: &str| {
        let containers = injected["spec"]["initContainers"].as_array().unwrap();
        let container = containers.iter().find(|c| c["name"] == name).unwrap();
        container["resources"].clone()
    };
    assert_eq!(
        resources("lattice-xds-envoy"),
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
    );
    assert_eq!(
        resources("lattice-xds-signer"),
        json!({"limits": {"memory": "64Mi"}})
    );
    assert_eq!(resources("lattice-xds-redirect"), json!({}));
    // The defaults request and do not limit.
    let defaults = crate::inject::SidecarResources::default().to_string();
    assert!(defaults.contains("requests") && !defaults.contains("limits"));
    // A misspelt container is refused by name.
    let error = r#"{"proxy": {}, "envoy": {}, "signer": {}, "init": {}}"#
        .parse::<crate::inject::SidecarResources>()
        .unwrap_err();
    assert!(error.contains("proxy"), "{error}");
}

/// What the README promises of the injected containers: the restricted Pod Security profile for
/// all of them, but for the redirect init container, which runs as root with NET_ADMIN and
/// NET_RAW to install the iptables rules.
#[test]
fn every_injected_container_is_locked_down() {
    let injected = inject(
        &pod(json!({ INJECT_ANNOTATION: "true" })),
        &config(SigningMode::ExtProc),
        None,
    );
    let containers = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(containers.len(), 4, "{containers:?}");
    for container in containers {
        let name = container["name"].as_str().unwrap();
        let context = &container["securityContext"];
        assert_eq!(context["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(context["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            context["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(context["capabilities"]["drop"], json!(["ALL"]), "{name}");
        if name == "lattice-xds-redirect" {
            assert_eq!(
                context["capabilities"]["add"],
                json!(["NET_ADMIN", "NET_RAW"])
            );
            assert_eq!(context["runAsUser"], 0);
        } else {
            assert!(
                context["capabilities"]["add"].is_null(),
                "{name}: {context}"
            );
            assert_eq!(context["runAsNonRoot"], true, "{name}");
        }
    }
}

/// The application starts only once both sidecars have: Envoy's egress listener exists and the
/// signer holds credentials. Envoy runs the configured workers, not one per CPU of the node.
#[test]
fn the_sidecars_hold_the_application_until_they_can_serve() {
    let mut config = config(SigningMode::ExtProc);
    config.envoy.concurrency = 3;
    let injected = inject(&pod(json!({})), &config, None);
    let sidecars = &injected["spec"]["initContainers"];
    let envoy = &sidecars[2];
    assert_eq!(envoy["name"], "lattice-xds-envoy");
    assert_eq!(envoy["startupProbe"]["tcpSocket"]["port"], 8080);
    let args = envoy["args"].to_string();
    assert!(args.contains(r#""--concurrency","3""#), "{args}");
    assert!(args.contains(r#""--log-level","warning""#), "{args}");
    assert!(!args.contains("--log-format"), "{args}");
    let signer = &sidecars[3];
    assert_eq!(signer["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(signer["startupProbe"]["httpGet"]["port"], 9003);
    for sidecar in [envoy, signer] {
        let probe = &sidecar["startupProbe"];
        let patience =
            probe["periodSeconds"].as_u64().unwrap() * probe["failureThreshold"].as_u64().unwrap();
        assert!(patience >= 60, "{probe}");
    }

    // An egress listener on loopback only cannot be probed from the pod's address.
    config.envoy.egress_probe = false;
    config.log_format = LogFormat::Json;
    let injected = inject(&pod(json!({})), &config, None);
    let envoy = &injected["spec"]["initContainers"][2];
    assert!(envoy.get("startupProbe").is_none(), "{envoy}");
    assert!(envoy["args"].to_string().contains("--log-format"));
    let signer_env = injected["spec"]["initContainers"][3]["env"].to_string();
    assert!(
        signer_env.contains(r#"{"name":"LATTICE_XDS_LOG_FORMAT","value":"json"}"#),
        "{signer_env}"
    );
}
