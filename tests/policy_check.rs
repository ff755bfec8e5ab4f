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
