use std::collections::BTreeMap;

use serde_json::json;

use super::*;

const SERVICE: &str = "arn:aws:vpc-lattice:ap-northeast-2:890742582773:service/svc-0123/";

fn caller(tags: &[(&str, &str)]) -> Caller {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Caller::from_arn(
        "arn:aws:sts::890742582773:assumed-role/demo-role/eks-eks-clust-demo-pod-1234",
        tags,
    )
}

fn request(caller: Option<Caller>) -> Request {
    Request {
        caller,
        action: INVOKE.to_string(),
        resource: SERVICE.to_string(),
        method: "GET".to_string(),
        headers: vec![("x-team".to_string(), "payments".to_string())],
        query: vec![("version".to_string(), "2".to_string())],
        network: Network::default(),
    }
}

fn policy(statements: serde_json::Value) -> Policy {
    Policy::parse(&json!({ "Version": "2012-10-17", "Statement": statements }).to_string()).unwrap()
}

/// An Allow for the account with one condition.
fn allow_if(operator: &str, key: &str, value: serde_json::Value) -> Policy {
    policy(json!([{
        "Effect": "Allow",
        "Principal": { "AWS": "arn:aws:iam::890742582773:root" },
        "Action": "vpc-lattice-svcs:Invoke",
        "Resource": "*",
        "Condition": { operator: { key: value } }
    }]))
}

fn allows(policy: &Policy, request: &Request) -> bool {
    policy.evaluate(request).allowed()
}

/// The walkthrough's policies.
fn walkthrough_service_policy() -> Policy {
    allow_if(
        "StringEquals",
        "aws:PrincipalTag/eks-cluster-name",
        json!("eks-cluster2"),
    )
}

fn walkthrough_network_policy() -> Policy {
    policy(json!([{
        "Effect": "Allow",
        "Principal": "*",
        "Action": "vpc-lattice-svcs:Invoke",
        "Resource": "*",
        "Condition": { "StringNotEqualsIgnoreCase": { "aws:PrincipalType": "anonymous" } }
    }]))
}

#[test]
fn string_equals_and_not_equals() {
    let from_cluster2 = request(Some(caller(&[("eks-cluster-name", "eks-cluster2")])));
    let from_cluster1 = request(Some(caller(&[("eks-cluster-name", "eks-cluster1")])));
    let equals = walkthrough_service_policy();
    assert!(allows(&equals, &from_cluster2));
    assert!(!allows(&equals, &from_cluster1));
    let not_equals = allow_if(
        "StringNotEquals",
        "aws:PrincipalTag/eks-cluster-name",
        json!("eks-cluster1"),
    );
    assert!(allows(&not_equals, &from_cluster2));
    assert!(!allows(&not_equals, &from_cluster1));
}

#[test]
fn ignore_case_operators_and_case_insensitive_keys() {
    let upper = request(Some(caller(&[("eks-cluster-name", "EKS-Cluster2")])));
    let exact = allow_if(
        "StringEquals",
        "aws:PrincipalTag/eks-cluster-name",
        json!("eks-cluster2"),
    );
    assert!(
        !allows(&exact, &upper),
        "StringEquals is case-sensitive in its values"
    );
    let ignore = allow_if(
        "StringEqualsIgnoreCase",
        "AWS:principaltag/EKS-CLUSTER-NAME",
        json!("eks-cluster2"),
    );
    assert!(allows(&ignore, &upper));
    let not_ignore = allow_if(
        "StringNotEqualsIgnoreCase",
        "aws:PrincipalTag/eks-cluster-name",
        json!("EKS-CLUSTER2"),
    );
    assert!(!allows(&not_ignore, &upper));
}

#[test]
fn string_like_and_not_like() {
    let pod = request(Some(caller(&[(
        "kubernetes-pod-name",
        "demo-cluster1-v1-7d9f",
    )])));
    let like = allow_if(
        "StringLike",
        "aws:PrincipalTag/kubernetes-pod-name",
        json!("demo-cluster?-v1-*"),
    );
    assert!(allows(&like, &pod));
    let not_like = allow_if(
        "StringNotLike",
        "aws:PrincipalTag/kubernetes-pod-name",
        json!("demo-*"),
    );
    assert!(!allows(&not_like, &pod));
    let other = allow_if(
        "StringLike",
        "aws:PrincipalTag/kubernetes-pod-name",
        json!(["x-*", "*-v2-*"]),
    );
    assert!(!allows(&other, &pod));
}

#[test]
fn a_missing_tag_never_equals_and_always_differs() {
    let untagged = request(Some(caller(&[])));
    assert!(!allows(&walkthrough_service_policy(), &untagged));
    let not_equals = allow_if(
        "StringNotEquals",
        "aws:PrincipalTag/eks-cluster-name",
        json!("eks-cluster1"),
    );
    assert!(
        allows(&not_equals, &untagged),
        "a negated operator holds for an absent key, as in IAM"
    );
    let null = allow_if("Null", "aws:PrincipalTag/eks-cluster-name", json!("true"));
    assert!(allows(&null, &untagged));
    assert!(!allows(
        &null,
        &request(Some(caller(&[("eks-cluster-name", "x")])))
    ));
}

#[test]
fn bool_method_header_and_query_keys() {
    let call = request(Some(caller(&[("privileged", "true")])));
    assert!(allows(
        &allow_if("Bool", "aws:PrincipalTag/privileged", json!(true)),
        &call
    ));
    assert!(allows(
        &allow_if(
            "StringEquals",
            "vpc-lattice-svcs:RequestMethod",
            json!(["GET", "HEAD"])
        ),
        &call
    ));
    assert!(!allows(
        &allow_if(
            "StringEquals",
            "vpc-lattice-svcs:RequestMethod",
            json!("POST")
        ),
        &call
    ));
    assert!(allows(
        &allow_if(
            "StringEquals",
            "vpc-lattice-svcs:RequestHeader/X-Team",
            json!("payments")
        ),
        &call
    ));
    assert!(allows(
        &allow_if(
            "StringEquals",
            "vpc-lattice-svcs:RequestQueryString/version",
            json!("2")
        ),
        &call
    ));
    assert!(allows(
        &allow_if(
            "StringEquals",
            "aws:PrincipalAccount",
            json!("890742582773")
        ),
        &call
    ));
    assert!(allows(
        &allow_if("StringEquals", "aws:PrincipalType", json!("AssumedRole")),
        &call
    ));
}

#[test]
fn an_explicit_deny_wins() {
    let both = policy(json!([
        { "Sid": "everyone", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:*", "Resource": "*" },
        { "Sid": "no-deletes", "Effect": "Deny", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
          "Resource": "*", "Condition": { "StringEquals": { "vpc-lattice-svcs:RequestMethod": "DELETE" } } }
    ]));
    let mut delete = request(Some(caller(&[])));
    assert!(
        matches!(both.evaluate(&delete), Decision::Allow(s) if s.sid.as_deref() == Some("everyone"))
    );
    delete.method = "DELETE".to_string();
    assert!(
        matches!(both.evaluate(&delete), Decision::ExplicitDeny(s) if s.sid.as_deref() == Some("no-deletes"))
    );
}

#[test]
fn principals() {
    let pod = request(Some(caller(&[])));
    let anonymous = request(None);
    let by = |principal: serde_json::Value| {
        policy(
            json!([{ "Effect": "Allow", "Principal": principal, "Action": "vpc-lattice-svcs:Invoke", "Resource": "*" }]),
        )
    };
    assert!(
        allows(&by(json!("*")), &anonymous),
        "* admits anonymous callers"
    );
    assert!(!allows(
        &by(json!({ "AWS": "arn:aws:iam::890742582773:root" })),
        &anonymous
    ));
    assert!(allows(&by(json!({ "AWS": "890742582773" })), &pod));
    assert!(allows(
        &by(json!({ "AWS": "arn:aws:iam::890742582773:role/demo-role" })),
        &pod
    ));
    assert!(!allows(
        &by(json!({ "AWS": "arn:aws:iam::890742582773:role/other-role" })),
        &pod
    ));
    assert!(!allows(
        &by(json!({ "AWS": ["arn:aws:iam::111122223333:root"] })),
        &pod
    ));
}

#[test]
fn both_levels_must_allow() {
    let network = walkthrough_network_policy();
    let service = walkthrough_service_policy();
    let from_cluster2 = request(Some(caller(&[("eks-cluster-name", "eks-cluster2")])));
    assert_eq!(
        evaluate_lattice(Some(&network), Some(&service), &from_cluster2),
        Verdict::Allow
    );

    let from_cluster1 = request(Some(caller(&[("eks-cluster-name", "eks-cluster1")])));
    let Verdict::Deny { level, message } =
        evaluate_lattice(Some(&network), Some(&service), &from_cluster1)
    else {
        panic!("cluster1 was allowed");
    };
    assert_eq!(level, Level::Service);
    assert_eq!(
        message,
        "AccessDeniedException: User: arn:aws:sts::890742582773:assumed-role/demo-role/eks-eks-clust-demo-pod-1234 \
         is not authorized to perform: vpc-lattice-svcs:Invoke on resource: \
         arn:aws:vpc-lattice:ap-northeast-2:890742582773:service/svc-0123/ because no service-based policy \
         allows the vpc-lattice-svcs:Invoke action"
    );

    let Verdict::Deny { level, message } =
        evaluate_lattice(Some(&network), Some(&service), &request(None))
    else {
        panic!("an anonymous caller was allowed");
    };
    assert_eq!(level, Level::ServiceNetwork);
    assert!(
        message.starts_with("AccessDeniedException: User: anonymous is not authorized"),
        "{message}"
    );
    assert!(
        message
            .ends_with("because no network-based policy allows the vpc-lattice-svcs:Invoke action"),
        "{message}"
    );

    // A level without a policy does not restrict.
    assert_eq!(
        evaluate_lattice(None, Some(&service), &from_cluster2),
        Verdict::Allow
    );
    assert_eq!(evaluate_lattice(None, None, &request(None)), Verdict::Allow);
}

#[test]
fn what_cannot_be_evaluated_is_refused() {
    let refused = |statement: serde_json::Value| {
        Policy::parse(&json!({ "Statement": [statement] }).to_string())
            .unwrap_err()
            .to_string()
    };
    let error = refused(json!({ "Effect": "Allow", "Principal": "*", "Action": "*",
        "Condition": { "IpAddress": { "aws:SourceIp": "10.0.0.0/8" } } }));
    assert!(
        error.contains("IpAddress") && error.contains("not supported"),
        "{error}"
    );
    assert!(
        refused(json!({ "Effect": "Allow", "NotPrincipal": "*", "Action": "*" }))
            .contains("NotPrincipal")
    );
    assert!(
        refused(json!({ "Effect": "Maybe", "Principal": "*", "Action": "*" })).contains("Effect")
    );
    assert!(
        Policy::parse("not json")
            .unwrap_err()
            .to_string()
            .contains("not JSON")
    );
}

#[test]
fn wildcards() {
    assert!(wildcard("*", ""));
    assert!(wildcard("a*c", "abbbc"));
    assert!(wildcard("a?c", "abc"));
    assert!(!wildcard("a?c", "abbc"));
    assert!(wildcard("*-v1-*", "demo-cluster1-v1-abc"));
    assert!(!wildcard("demo", "demo-x"));
}

#[test]
fn only_the_keys_vpc_lattice_sets_are_read() {
    let refused = |key: &str| {
        let statement = json!({ "Effect": "Allow", "Principal": "*", "Action": "*",
            "Condition": { "StringEquals": { key: "x" } } });
        Policy::parse(&json!({ "Statement": [statement] }).to_string())
    };
    for typo in [
        "aws:PrincipalTags/team",
        "aws:SourceIp",
        "vpc-lattice-svcs:RequestHeader/",
        "team",
    ] {
        let error = refused(typo).unwrap_err().to_string();
        assert!(
            error.contains("is not one VPC Lattice sets"),
            "{typo}: {error}"
        );
    }
    for known in [
        "aws:principaltag/team",
        "VPC-LATTICE-SVCS:SourceVpc",
        "aws:PrincipalOrgID",
    ] {
        assert!(refused(known).is_ok(), "{known}");
    }
    let mut call = request(Some(caller(&[])));
    call.network.source_vpc = Some("vpc-1".to_string());
    assert_eq!(call.context_values("vpc-lattice-svcs:SourceVpc"), ["vpc-1"]);
    assert_eq!(
        call.context_values("vpc-lattice-svcs:ServiceArn"),
        ["arn:aws:vpc-lattice:ap-northeast-2:890742582773:service/svc-0123"]
    );
}

#[test]
fn an_identity_policy_has_no_principal() {
    let identity =
        json!({ "Statement": [{ "Effect": "Allow", "Action": INVOKE, "Resource": "*" }] });
    let policy = Policy::parse_as(&identity.to_string(), PolicyKind::Identity).unwrap();
    assert!(allows(&policy, &request(Some(caller(&[])))));
    assert!(
        Policy::parse(&identity.to_string()).is_err(),
        "an auth policy needs a Principal"
    );
    let with_principal =
        json!({ "Statement": [{ "Effect": "Allow", "Principal": "*", "Action": INVOKE }] });
    let error = Policy::parse_as(&with_principal.to_string(), PolicyKind::Identity).unwrap_err();
    assert!(error.to_string().contains("names no Principal"), "{error}");
}
