//! `lattice-xds policy check` as a script would use it: the first word, the exit status (0
//! Allow, 1 Deny, 2 bad input), and the walkthrough's IAMAuthPolicy manifest read as is.

mod support;

use std::process::Command;

fn check(args: &[&str]) -> (i32, String) {
    let output = Command::new(support::lattice_xds())
        .args(["policy", "check"])
        .args(args)
        .output()
        .expect("run policy check");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().expect("exit status"), text)
}

const SESSION: &str =
    "arn:aws:sts::890742582773:assumed-role/demo-role/eks-eks-cluste-demo-clust-0a1b";

#[test]
fn the_walkthrough_policy_admits_cluster2_and_refuses_cluster1() {
    let policy = "--policy=examples/cluster1/demo-cluster1.yaml";
    let (status, output) = check(&[
        policy,
        &format!("--principal={SESSION}"),
        "--tag=eks-cluster-name=eks-cluster2",
        "--tag=kubernetes-namespace=apps",
    ]);
    assert_eq!(status, 0, "{output}");
    assert_eq!(output.split_whitespace().next(), Some("Allow"), "{output}");
    assert!(output.contains("statement 1"), "{output}");

    let (status, output) = check(&[
        policy,
        &format!("--principal={SESSION}"),
        "--tag=eks-cluster-name=eks-cluster1",
        "--tag=kubernetes-namespace=apps",
    ]);
    assert_eq!(status, 1, "{output}");
    assert_eq!(output.split_whitespace().next(), Some("Deny"), "{output}");
    assert!(
        output.contains(&format!(
            "AccessDeniedException: User: {SESSION} is not authorized"
        )),
        "{output}"
    );

    let (status, output) = check(&[policy, "--principal=anonymous"]);
    assert_eq!(status, 1, "{output}");
    assert!(output.contains("User: anonymous"), "{output}");
}

#[test]
fn bad_input_is_status_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let unsupported = dir.path().join("policy.json");
    std::fs::write(
        &unsupported,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
    )
    .unwrap();
    let (status, output) = check(&[
        &format!("--policy={}", unsupported.display()),
        "--principal=anonymous",
    ]);
    assert_eq!(status, 2, "{output}");
    assert!(
        output.contains("IpAddress") && output.contains("not supported"),
        "{output}"
    );

    let (status, output) = check(&["--policy=/nonexistent.json", "--principal=anonymous"]);
    assert_eq!(status, 2, "{output}");
    assert!(output.contains("cannot read /nonexistent.json"), "{output}");

    let (status, output) = check(&[
        "--policy=examples/cluster1/demo-cluster1.yaml",
        "--principal=anonymous",
        "--tag=novalue",
    ]);
    assert_eq!(status, 2, "{output}");
    assert!(output.contains("is not KEY=VALUE"), "{output}");
}

/// A denial names the element that failed: what the statement wants, what the request has.
#[test]
fn a_denial_is_traced_statement_by_statement() {
    let (status, output) = check(&[
        "--policy=examples/cluster1/demo-cluster1.yaml",
        &format!("--principal={SESSION}"),
        "--tag=eks-cluster-name=eks-cluster1",
    ]);
    assert_eq!(status, 1, "{output}");
    assert!(
        output.contains("statement 1, Allow: does not apply"),
        "{output}"
    );
    assert!(
        output.contains(
            "FAIL Condition StringEquals aws:PrincipalTag/eks-cluster-name: wants eks-cluster2; the request has eks-cluster1"
        ),
        "{output}"
    );
    assert!(
        output.contains("FAIL Condition StringEquals aws:PrincipalTag/kubernetes-namespace: wants apps; the request has nothing (the key is absent)"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "ok   Principal: wants arn:aws:iam::890742582773:root; the request has {SESSION}"
        )),
        "{output}"
    );
    // No --resource: the report says the resource is a placeholder.
    assert!(
        output.contains("(a placeholder: pass --resource"),
        "{output}"
    );
    // No identity-based policy: the report says it was not checked.
    assert!(
        output.contains("Not checked: the caller's identity-based policy"),
        "{output}"
    );
}

fn write(dir: &std::path::Path, name: &str, json: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json.to_string()).unwrap();
    path.display().to_string()
}

/// A key VPC Lattice never sets is refused by name instead of being treated as absent; the keys
/// it does set are read from the flags that describe the call.
#[test]
fn condition_keys_are_those_vpc_lattice_sets() {
    let dir = tempfile::tempdir().unwrap();
    let allow_if = |key: &str, value: &str| {
        serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*",
            "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
            "Condition": {"StringEquals": {key: value}}}]})
    };
    let typo = write(
        dir.path(),
        "typo.json",
        allow_if("aws:PrincipalTags/team", "a"),
    );
    let (status, output) = check(&[&format!("--policy={typo}"), "--principal=anonymous"]);
    assert_eq!(status, 2, "{output}");
    assert!(
        output.contains("condition key \"aws:PrincipalTags/team\" is not one VPC Lattice sets"),
        "{output}"
    );

    for (key, value, flag) in [
        (
            "vpc-lattice-svcs:SourceVpc",
            "vpc-0a1b",
            "--source-vpc=vpc-0a1b",
        ),
        (
            "aws:PrincipalOrgID",
            "o-abc123",
            "--principal-org-id=o-abc123",
        ),
        ("vpc-lattice-svcs:Port", "8443", "--port=8443"),
        (
            "vpc-lattice-svcs:ServiceArn",
            "arn:aws:vpc-lattice:us-west-2:111122223333:service/svc-0123",
            "--resource=arn:aws:vpc-lattice:us-west-2:111122223333:service/svc-0123/orders",
        ),
    ] {
        let policy = write(dir.path(), "key.json", allow_if(key, value));
        let policy = format!("--policy={policy}");
        let principal = format!("--principal={SESSION}");
        let (status, output) = check(&[&policy, &principal, flag]);
        assert_eq!(status, 0, "{key} from {flag}: {output}");
        let (status, output) = check(&[&policy, &principal]);
        assert_eq!(status, 1, "{key} without {flag}: {output}");
    }
}

/// The caller's own role must allow the call too; a Gateway's policy given as the service's is
/// pointed out; a principal that is no ARN is refused.
#[test]
fn the_identity_policy_counts_and_misplaced_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let role = |effect: &str, action: &str| {
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": effect, "Action": action, "Resource": "*"}]})
    };
    let service = "--policy=examples/cluster1/demo-cluster1.yaml";
    let principal = format!("--principal={SESSION}");
    let tags = [
        "--tag=eks-cluster-name=eks-cluster2",
        "--tag=kubernetes-namespace=apps",
    ];
    let allows = write(
        dir.path(),
        "allows.json",
        role("Allow", "vpc-lattice-svcs:Invoke"),
    );
    let mut args = vec![service, &principal, tags[0], tags[1]];
    let with = format!("--identity-policy={allows}");
    args.push(&with);
    let (status, output) = check(&args);
    assert_eq!(status, 0, "{output}");
    assert!(
        output.contains("The caller's identity-based policy, statement by statement"),
        "{output}"
    );

    let other = write(dir.path(), "other.json", role("Allow", "s3:GetObject"));
    let with = format!("--identity-policy={other}");
    *args.last_mut().unwrap() = &with;
    let (status, output) = check(&args);
    assert_eq!(status, 1, "{output}");
    assert!(
        output
            .contains("because no identity-based policy allows the vpc-lattice-svcs:Invoke action"),
        "{output}"
    );

    // The Gateway's IAMAuthPolicy passed as the service's.
    let (status, output) = check(&["--policy=examples/cluster1/gateway.yaml", &principal]);
    assert_eq!(status, 0, "{output}");
    assert!(
        output.contains("this IAMAuthPolicy is attached to a Gateway")
            && output.contains("pass it with --network-policy"),
        "{output}"
    );

    let (status, output) = check(&[service, "--principal=demo-role"]);
    assert_eq!(status, 2, "{output}");
    assert!(
        output.contains("\"demo-role\" is not a caller's ARN"),
        "{output}"
    );
}
