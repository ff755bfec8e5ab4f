use std::time::Duration;

use aws_credential_types::Credentials;

use super::*;

const SECRET: &str = "very/secret+KEY";
const TOKEN: &str = "SESSION-TOKEN-VALUE";

pub(super) fn signer(region: Option<&str>) -> Signer {
    let allowed: Vec<&str> = region.into_iter().collect();
    signer_allowing(region, &["vpc-lattice-svcs"], &allowed)
}

fn signer_allowing(region: Option<&str>, services: &[&str], regions: &[&str]) -> Signer {
    let credentials = Credentials::new(
        "ASIAEXAMPLE",
        SECRET,
        Some(TOKEN.to_string()),
        Some(SystemTime::now() + Duration::from_secs(600)),
        "test",
    );
    let defaults = Defaults {
        region: region.map(str::to_string),
        service: "vpc-lattice-svcs".to_string(),
        algorithm: Algorithm::SigV4,
        region_set: "*".to_string(),
        allowed_services: services.iter().map(|s| s.to_string()).collect(),
        allowed_regions: regions.iter().map(|r| r.to_string()).collect(),
    };
    Signer::new(
        defaults,
        CredentialStore::fixed(credentials),
        Arc::default(),
    )
}

fn request() -> Request<'static> {
    Request {
        method: "GET",
        path: "/",
        authority: "svc.example.com",
        headers: &[("authorization", "Bearer app"), ("x-amz-meta-app", "1")],
    }
}

#[test]
fn debug_output_never_shows_secrets_or_signatures() {
    let signer = signer(Some("eu-west-1"));
    let mutation = signer
        .sign(&request(), &Overrides::default(), "test")
        .unwrap();
    for text in [format!("{signer:?}"), format!("{mutation:?}")] {
        assert!(!text.contains(SECRET) && !text.contains(TOKEN), "{text}");
        assert!(!text.contains("Signature="), "{text}");
    }
    let signature = &mutation.set.headers[0].1;
    assert!(signature.contains("Signature="));
    assert!(!format!("{mutation:?}").contains(signature.as_str()));
}

#[test]
fn the_controllers_overrides_win_over_the_signers_defaults() {
    let signer = signer_allowing(
        Some("eu-west-1"),
        &["vpc-lattice-svcs", "execute-api"],
        &["eu-west-1", "ap-northeast-2"],
    );
    let overrides = Overrides::from_headers(|name| match name {
        override_headers::REGION => Some("ap-northeast-2"),
        override_headers::SERVICE => Some("execute-api"),
        _ => None,
    })
    .unwrap();
    let mutation = signer.sign(&request(), &overrides, "test").unwrap();
    let authorization = &mutation.set.headers[0].1;
    assert!(
        authorization.contains("/ap-northeast-2/execute-api/aws4_request"),
        "{authorization}"
    );
    assert_eq!(mutation.remove, ["x-amz-meta-app"]);
}

#[test]
fn sigv4a_signs_for_the_region_set() {
    let mut signer = signer(None);
    signer.defaults.algorithm = Algorithm::SigV4a;
    let overrides = Overrides {
        algorithm: Some(Algorithm::SigV4a),
        ..Overrides::default()
    };
    let mutation = signer.sign(&request(), &overrides, "test").unwrap();
    let names: Vec<&str> = mutation.set.headers.iter().map(|(name, _)| *name).collect();
    assert!(names.contains(&"x-amz-region-set"), "{names:?}");
    let authorization = &mutation.set.headers[0].1;
    assert!(
        authorization.starts_with("AWS4-ECDSA-P256-SHA256 Credential=ASIAEXAMPLE/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("/vpc-lattice-svcs/aws4_request"),
        "{authorization}"
    );
}

#[test]
fn no_region_and_unknown_algorithms_are_refused_clearly() {
    let refusal = signer(None)
        .sign(&request(), &Overrides::default(), "test")
        .unwrap_err();
    assert_eq!(refusal, Refusal::NoRegion);
    assert_eq!(refusal.status(), 500);
    assert!(
        refusal
            .body()
            .starts_with("lattice-xds signer: no region to sign for")
    );
    let error =
        Overrides::from_headers(|name| (name == override_headers::ALGORITHM).then_some("sigv5"))
            .unwrap_err();
    assert!(error.to_string().contains("expected sigv4 or sigv4a"));
}

#[test]
fn services_and_regions_not_configured_are_refused_with_403() {
    let signer = signer(Some("eu-west-1"));
    let asked = |service: Option<&str>, region: Option<&str>| {
        let overrides = Overrides {
            service: service.map(str::to_string),
            region: region.map(str::to_string),
            ..Overrides::default()
        };
        signer.sign(&request(), &overrides, "test")
    };
    let s3 = asked(Some("s3"), None).unwrap_err();
    assert_eq!(s3.status(), 403);
    assert_eq!(s3.reason(), "service_not_allowed");
    assert!(
        s3.body().contains(
            "service \"s3\" is not one this signer signs for (--allow-service: vpc-lattice-svcs)"
        ),
        "{}",
        s3.body()
    );
    let elsewhere = asked(None, Some("us-east-1")).unwrap_err();
    assert_eq!(elsewhere.reason(), "region_not_allowed");
    assert!(
        elsewhere.body().contains("--allow-region: eu-west-1"),
        "{}",
        elsewhere.body()
    );
    assert!(asked(None, Some("eu-west-1")).is_ok());
    // A region set of allowed regions, or the signer's own, is signed; others are not.
    let set = |regions: &str| Overrides {
        algorithm: Some(Algorithm::SigV4a),
        region_set: Some(regions.to_string()),
        ..Overrides::default()
    };
    assert!(signer.sign(&request(), &set("eu-west-1"), "test").is_ok());
    for wide in ["*", "eu-west-1,us-east-1"] {
        let refused = signer.sign(&request(), &set(wide), "test").unwrap_err();
        assert_eq!(refused.reason(), "region_not_allowed", "{wide}");
    }
    // Switching to SigV4A without a region set falls back to the signer's own set, which a
    // SigV4 signer does not sign for.
    let switched = Overrides {
        algorithm: Some(Algorithm::SigV4a),
        ..Overrides::default()
    };
    let refused = signer.sign(&request(), &switched, "test").unwrap_err();
    assert_eq!(refused.reason(), "region_not_allowed");
}

#[test]
fn header_names_that_are_not_ascii_are_neither_owned_nor_a_panic() {
    assert!(!canonical::owned_by_signer("𞸲Q𬪺K"));
    assert!(!canonical::left_unsigned("x-é"));
    assert!(canonical::owned_by_signer("X-Amz-Date"));
    assert!(canonical::left_unsigned("X-Envoy-Original-Path"));
}
