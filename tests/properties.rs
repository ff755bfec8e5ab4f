//! Properties that must hold for every input, checked on generated ones (proptest):
//! - manifests → model → translation is deterministic and does not depend on the order the
//!   objects arrive in, and every snapshot it makes is consistent (every referenced route,
//!   cluster and secret exists);
//! - the IAM policy evaluator never panics, and an explicit Deny always wins;
//! - signing requests of arbitrary shape never panics, and what it returns is either a signed
//!   request or a refusal, never an unsigned forward.
//!
//! `make test` runs a few hundred cases per property (`PROPTEST_CASES` changes it); the longer
//! run and its results are in `docs/properties.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use lattice_xds::model::{AuthSetting, ServiceOrigin, Settings, SigningAlgorithm};
use lattice_xds::policy::{Caller, Decision, Network, Policy, Request};
use lattice_xds::provider::discovery::Service;
use lattice_xds::provider::{Observed, lattice, manifests};
use lattice_xds::signer::canonical;
use lattice_xds::signer::credentials::CredentialStore;
use lattice_xds::signer::{Defaults, Overrides, Signer};
use lattice_xds::translate::translate;
use lattice_xds::xds::snapshot::Snapshot;
use proptest::prelude::*;
use serde_json::json;

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const SECTIONS: [&str; 3] = [
    "https-listener-with-custom-domain",
    "https-listener-with-default-domain",
    "no-such-listener",
];

/// One generated HTTPRoute: name, namespace, host names, listener section.
#[derive(Clone, Debug)]
struct Route {
    name: String,
    namespace: &'static str,
    hosts: Vec<String>,
    section: &'static str,
}

impl Route {
    fn manifest(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|h| format!("\"{h}\"")).collect();
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {}\n  namespace: {}\n\
             spec:\n  hostnames: [{}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
             \x20   sectionName: {}\n",
            self.name,
            self.namespace,
            hosts.join(", "),
            self.section
        )
    }
}

fn route() -> impl Strategy<Value = Route> {
    (
        "[a-d]{1,2}",
        prop::sample::select(vec!["apps", "shop"]),
        prop::collection::vec(
            "(svc-[a-c]|[a-c])\\.example\\.com|[A-Z]{1,2}\\.example\\.com",
            1..3,
        ),
        prop::sample::select(SECTIONS.to_vec()),
    )
        .prop_map(|(name, namespace, hosts, section)| Route {
            name,
            namespace,
            hosts,
            section,
        })
}

/// The mesh's resources and what was skipped, from `documents` parsed in that order.
fn translated(documents: &[String]) -> (lattice_xds::translate::Resources, Vec<String>) {
    let mut observed = Observed::default();
    for (index, document) in documents.iter().enumerate() {
        manifests::parse(&format!("doc-{index}"), document, &mut observed);
    }
    let (mesh, skipped) = lattice::build(&observed.inputs, &[], &Settings::default());
    let mut skipped: Vec<String> = skipped
        .into_iter()
        .map(|invalid| format!("{:?} {}", invalid.object, invalid.reason))
        .collect();
    skipped.sort();
    (translate(&mesh), skipped)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn translation_is_deterministic_order_free_and_consistent(
        routes in prop::collection::vec(route(), 0..10),
        seed in any::<u64>(),
    ) {
        let mut documents: Vec<String> = vec![GATEWAY.to_string()];
        documents.extend(routes.iter().map(Route::manifest));
        let (first, first_skipped) = translated(&documents);
        let (again, _) = translated(&documents);
        prop_assert_eq!(&first, &again, "the same input translated twice differs");

        let mut shuffled = documents.clone();
        shuffle(&mut shuffled, seed);
        let (reordered, reordered_skipped) = translated(&shuffled);
        prop_assert_eq!(&first, &reordered, "the translation depends on the input order");
        prop_assert_eq!(first_skipped, reordered_skipped);

        if let Err(inconsistent) = Snapshot::new(1, &first, None) {
            prop_assert!(false, "an inconsistent snapshot: {inconsistent}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// A rebuild by difference gives what a build and a translation from nothing give: the
    /// gateway and the routes whose text did not change are the same shared objects, as a
    /// provider hands them on, and the rest came, went or changed.
    #[test]
    fn a_rebuild_by_difference_is_a_build_from_nothing(
        before in prop::collection::vec(route(), 0..10),
        after in prop::collection::vec(route(), 0..10),
        kept in prop::collection::vec(any::<bool>(), 10),
    ) {
        let mut objects = BTreeMap::new();
        let mut gateway = Observed::default();
        manifests::parse("gateway", GATEWAY, &mut gateway);
        let mut inputs = |routes: &[&Route]| {
            let mut observed = Observed {
                inputs: gateway.inputs.clone(),
                ..Observed::default()
            };
            for route in routes {
                let shared = objects.entry(route.manifest()).or_insert_with_key(|text| {
                    let mut one = Observed::default();
                    manifests::parse("route", text, &mut one);
                    one.inputs.routes.pop()
                });
                observed.inputs.routes.extend(shared.clone());
            }
            observed.inputs
        };
        let first: Vec<&Route> = before.iter().collect();
        // Some of the routes before stay, and the new ones come after them.
        let second: Vec<&Route> = (before.iter().zip(&kept))
            .filter_map(|(route, kept)| kept.then_some(route))
            .chain(&after)
            .collect();
        let (first, second) = (inputs(&first), inputs(&second));
        let settings = Settings::default();
        let discovered = discovered();
        let mut builder = lattice::Builder::default();
        let (first_mesh, _) = builder.build(&first, &discovered, &settings);
        let (mesh, mut skipped) = builder.build(&second, &discovered, &settings);
        // From nothing, and with the routes listed the other way round: the precedence is
        // the routes' own, whatever order they came in.
        let mut reversed = second.clone();
        reversed.routes.reverse();
        let (whole, mut whole_skipped) = lattice::build(&reversed, &discovered, &settings);
        prop_assert_eq!(&mesh, &whole);
        skipped.sort();
        whole_skipped.sort();
        prop_assert_eq!(skipped, whole_skipped);

        let previous = Snapshot::new(1, &translate(&first_mesh), None).unwrap();
        let by_difference = lattice_xds::translate::translate_from(&mesh, Some(&first_mesh));
        let snapshot = Snapshot::new(2, &by_difference, Some(&previous)).unwrap();
        let from_nothing = Snapshot::new(2, &translate(&whole), None).unwrap();
        for (type_url, resources) in &from_nothing.types {
            prop_assert_eq!(&snapshot.types[type_url].resources, &resources.resources);
        }
    }
}

/// Services the VPC Lattice API lists under host names the generated routes claim: apps/a's
/// own service, which it shares its name with, and one of another account that no route may
/// take a name from.
fn discovered() -> Vec<Service> {
    let service = |name: &str, domain: &str, account: &str| {
        let origin = ServiceOrigin {
            name: name.to_string(),
            arn: format!("arn:aws:vpc-lattice:us-west-2:{account}:service/svc-{name}"),
            account: account.to_string(),
            auth: AuthSetting::default(),
            networks: Vec::new(),
            // Listeners unread: the sidecar assumes HTTPS on 443.
            listeners_read: false,
        };
        Service {
            id: origin.arn.clone(),
            origin: Arc::new(origin),
            custom_domain: Some(domain.to_string()),
            assigned_name: None,
            listeners: Vec::new(),
        }
    };
    vec![
        service("a-apps", "svc-a.example.com", "111122223333"),
        service("shared", "svc-b.example.com", "444455556666"),
    ]
}

/// A deterministic Fisher–Yates shuffle from `seed`.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

/// The number of cases: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

const ACCOUNT: &str = "890742582773";
const SERVICE: &str = "arn:aws:vpc-lattice:ap-northeast-2:890742582773:service/svc-0123/";

/// One generated policy statement, as JSON.
fn statement() -> impl Strategy<Value = serde_json::Value> {
    let principal = prop::sample::select(vec![
        json!("*"),
        json!({ "AWS": format!("arn:aws:iam::{ACCOUNT}:root") }),
        json!({ "AWS": "arn:aws:iam::111122223333:root" }),
        json!({ "AWS": format!("arn:aws:iam::{ACCOUNT}:role/demo-role") }),
    ]);
    let action = prop::sample::select(vec![
        json!("vpc-lattice-svcs:Invoke"),
        json!("vpc-lattice-svcs:*"),
        json!("*"),
        json!("s3:GetObject"),
    ]);
    let resource = prop::sample::select(vec![
        json!("*"),
        json!(SERVICE),
        json!(format!("{SERVICE}*")),
        json!("arn:aws:vpc-lattice:*:*:service/svc-*/private/*"),
    ]);
    let condition = prop::sample::select(vec![
        json!(null),
        json!({ "StringEquals": { "aws:PrincipalTag/team": "payments" } }),
        json!({ "StringNotEquals": { "vpc-lattice-svcs:RequestMethod": "GET" } }),
        json!({ "StringLike": { "vpc-lattice-svcs:RequestHeader/x-team": "pay*" } }),
        json!({ "Null": { "aws:PrincipalTag/team": "true" } }),
        json!({ "Null": { "vpc-lattice-svcs:SourceVpc": "true" } }),
    ]);
    (any::<bool>(), principal, action, resource, condition).prop_map(
        |(allow, principal, action, resource, condition)| {
            let mut statement = json!({
                "Effect": if allow { "Allow" } else { "Deny" },
                "Principal": principal,
                "Action": action,
                "Resource": resource,
            });
            if !condition.is_null() {
                statement["Condition"] = condition;
            }
            statement
        },
    )
}

fn policy(statements: &[serde_json::Value]) -> Policy {
    Policy::parse(&json!({ "Version": "2012-10-17", "Statement": statements }).to_string())
        .expect("generated statements parse")
}

fn lattice_request() -> impl Strategy<Value = Request> {
    (
        prop::option::of((
            prop::sample::select(vec![ACCOUNT, "111122223333"]),
            prop::option::of(prop::sample::select(vec!["payments", "web", ""])),
        )),
        prop::sample::select(vec!["GET", "POST", "DELETE"]),
        prop::sample::select(vec![SERVICE.to_string(), format!("{SERVICE}private/x")]),
        prop::option::of("[a-z*]{0,8}"),
    )
        .prop_map(|(caller, method, resource, team_header)| Request {
            caller: caller.map(|(account, team)| {
                let tags: BTreeMap<String, String> = team
                    .map(|team| [("team".to_string(), team.to_string())].into())
                    .unwrap_or_default();
                Caller::from_arn(
                    &format!("arn:aws:sts::{account}:assumed-role/demo-role/session"),
                    tags,
                )
            }),
            action: "vpc-lattice-svcs:Invoke".to_string(),
            resource,
            method: method.to_string(),
            headers: team_header
                .map(|value| vec![("x-team".to_string(), value)])
                .unwrap_or_default(),
            query: Vec::new(),
            network: Network::default(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn an_explicit_deny_always_wins(
        statements in prop::collection::vec(statement(), 1..6),
        request in lattice_request(),
    ) {
        let combined = policy(&statements);
        let whole = combined.evaluate(&request);
        let denied_alone = statements
            .iter()
            .filter(|s| s["Effect"] == "Deny")
            .any(|s| matches!(policy(std::slice::from_ref(s)).evaluate(&request), Decision::ExplicitDeny(_)));
        let allowed_alone = statements
            .iter()
            .any(|s| policy(std::slice::from_ref(s)).evaluate(&request).allowed());
        if denied_alone {
            prop_assert!(matches!(whole, Decision::ExplicitDeny(_)), "a matching Deny lost: {whole:?}");
        } else if allowed_alone {
            prop_assert!(whole.allowed(), "a matching Allow, no Deny, yet {whole:?}");
        } else {
            prop_assert_eq!(whole, Decision::ImplicitDeny);
        }
    }

    #[test]
    fn policies_of_any_text_never_panic(text in ".{0,200}", json_like in "\\{\"Statement\":\\[\\{\"Effect\":\"(Allow|Deny)\",\"Action\":.{0,40}\\}\\]\\}") {
        let _ = Policy::parse(&text);
        if let Ok(policy) = Policy::parse(&json_like) {
            let request = Request {
                caller: None,
                action: "vpc-lattice-svcs:Invoke".to_string(),
                resource: SERVICE.to_string(),
                method: "GET".to_string(),
                headers: Vec::new(),
                query: Vec::new(),
                network: Network::default(),
            };
            let _ = policy.evaluate(&request);
        }
    }
}

fn signer() -> Signer {
    let credentials = Credentials::new(
        "ASIAEXAMPLE",
        "very/secret+KEY",
        Some("SESSION".to_string()),
        Some(SystemTime::now() + Duration::from_secs(600)),
        "properties",
    );
    Signer::new(
        Defaults {
            region: Some("eu-west-1".to_string()),
            service: "vpc-lattice-svcs".to_string(),
            algorithm: SigningAlgorithm::SigV4,
            region_set: "*".to_string(),
            allowed_services: vec!["vpc-lattice-svcs".to_string()],
            allowed_regions: vec!["eu-west-1".to_string(), "us-east-1".to_string()],
        },
        CredentialStore::fixed(credentials),
        Arc::default(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn any_request_is_signed_or_refused(
        method in "\\PC{0,12}",
        path in "\\PC{0,80}",
        authority in "\\PC{0,40}",
        headers in prop::collection::vec(("\\PC{0,20}", "\\PC{0,60}"), 0..8),
        overrides in prop::collection::vec(
            (prop::sample::select(vec![
                "x-lattice-xds-region", "x-lattice-xds-service",
                "x-lattice-xds-algorithm", "x-lattice-xds-region-set",
            ]), "\\PC{0,20}"),
            0..4,
        ),
    ) {
        let signer = signer();
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let Ok(overrides) = Overrides::from_headers(|name| {
            overrides.iter().find(|(key, _)| *key == name).map(|(_, v)| v.as_str())
        }) else {
            // An unknown algorithm is refused before anything is signed.
            return Ok(());
        };
        let request = canonical::Request {
            method: &method,
            path: &path,
            authority: &authority,
            headers: &headers,
        };
        match signer.sign(&request, &overrides, "property") {
            Ok(mutation) => {
                let authorization = mutation
                    .set
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                    .map(|(_, value)| value.as_str());
                prop_assert!(
                    authorization.is_some_and(|a| a.starts_with("AWS4-")),
                    "signed without an AWS authorization: {authorization:?}"
                );
                prop_assert!(mutation.set.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("x-amz-date")));
            }
            Err(refusal) => {
                prop_assert!(refusal.status() >= 400, "a refusal with status {}", refusal.status());
            }
        }
    }
}
