//! Mistakes that parse: `lattice-xds validate` says what a manifest directory would serve and
//! why each object is skipped or each field ignored, and the controller reports the same
//! (log, metric) while serving the rest.

mod support;

use support::process::Controller;

const CASE: &str = "tests/testdata/translate/invalid-input/input";
const TYPOS: &str = "tests/testdata/translate/invalid-input/input/d-typos.yaml";

fn validate(args: &[&str]) -> (Option<i32>, String, String) {
    support::run_lattice_xds(&[&["validate"], args].concat())
}

#[test]
fn a_clean_directory_lists_what_is_served_and_exits_0() {
    let (code, out, _) = validate(&["examples/cluster1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(
            "examples/cluster1: 3 destinations served, 0 objects skipped, 0 fields ignored"
        ),
        "{out}"
    );
    let line = (out.lines())
        .find(|line| line.trim_start().starts_with("demo-cluster1.example.com "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("443  HTTPS"), "{line}");
    assert!(line.contains("HTTPRoute apps/demo-cluster1"), "{line}");
    assert!(
        line.contains("apps/demo-cluster1-iam-auth-policy (service)"),
        "{line}"
    );
}

#[test]
fn typos_are_named_by_file_and_line_and_a_bad_parent_keeps_the_good_ones() {
    let (code, out, _) = validate(&[CASE]);
    assert_eq!(code, Some(1), "{out}");
    // A misspelt field: where it is, and that the route is read without it.
    assert!(
        out.contains(&format!(
            "{TYPOS}:9: HTTPRoute apps/typo-hostname: unknown field spec.hostname, ignored"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{TYPOS}:25: HTTPRoute apps/typo-parentrefs: unknown field spec.parentRef, ignored"
        )),
        "{out}"
    );
    // What the typos did: a route that attaches to nothing, one that names no host, a Gateway
    // of no class.
    assert!(
        out.contains("HTTPRoute apps/typo-parentrefs: attaches to nothing"),
        "{out}"
    );
    assert!(
        out.contains("HTTPRoute apps/typo-hostname: names no host"),
        "{out}"
    );
    assert!(
        out.contains(
            "Gateway lattice-gateway/typo-class: gatewayClassName \"amazon-vpc-latice\" names no GatewayClass"
        ),
        "{out}"
    );
    // One unknown listener among its parents: reported, and the route served through the other.
    assert!(
        out.contains("HTTPRoute apps/one-bad-parent: unknown parent"),
        "{out}"
    );
    let served = (out.lines())
        .find(|line| line.trim_start().starts_with("kept.example.com "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(served.contains("HTTPRoute apps/one-bad-parent"), "{served}");

    let (code, json, _) = validate(&[CASE, "--output", "json"]);
    assert_eq!(code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["ignored"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 12, "{json}");
    let hosts: Vec<&str> = (report["served"].as_array().unwrap().iter())
        .map(|served| served["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["good.example.com", "kept.example.com"]);
}

#[test]
fn a_directory_that_cannot_be_read_exits_2() {
    let (code, out, err) = validate(&["no/such/directory"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        err.contains("manifest directory no/such/directory"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reports_ignored_fields_and_serves_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(dir.path(), &[format!("--manifests={CASE}")]).await;
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_input_warnings{kind=\"HTTPRoute\"} 3"),
        "{metrics}"
    );
    let log = controller.process.log_text();
    let warning = (log.lines())
        .find(|line| line.contains("ignored part of an input") && line.contains("spec.hostname"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains(&format!("{TYPOS}:9")), "{warning}");
}
