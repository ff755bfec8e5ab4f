use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::*;

fn ca(name: &str, days_from_now: (i64, i64)) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(days_from_now.0);
    params.not_after = now + time::Duration::days(days_from_now.1);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

#[test]
fn a_valid_root_ca_is_described() {
    let (pem, _) = ca("Example Root CA", (-1, 365));
    let valid = validate(&pem, None, SystemTime::now()).unwrap();
    assert_eq!(valid.certificate.subject, "CN=Example Root CA");
    assert_eq!(valid.certificate.fingerprint_sha256.len(), 64);
    assert!(valid.chain.is_empty());
    assert!(
        valid.pem.starts_with("-----BEGIN CERTIFICATE-----\n")
            && valid.pem.ends_with("-----END CERTIFICATE-----\n")
    );
    let again = validate(&valid.pem, None, SystemTime::now()).unwrap();
    assert_eq!(
        again.certificate, valid.certificate,
        "the re-encoded PEM is the same certificate"
    );
}

#[test]
fn a_subordinate_ca_keeps_its_chain() {
    let (root_pem, root) = ca("Root", (-1, 365));
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Subordinate");
    let sub = params.signed_by(&key, &root).unwrap().pem();
    let valid = validate(&sub, Some(&root_pem), SystemTime::now()).unwrap();
    assert_eq!(valid.certificate.issuer, "CN=Root");
    assert_eq!(valid.chain.len(), 1);
    assert_eq!(valid.pem.matches("BEGIN CERTIFICATE").count(), 2);
}

#[test]
fn a_leaf_certificate_is_not_a_ca() {
    let (_, root) = ca("Root", (-1, 365));
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["svc.example.com".to_string()])
        .unwrap()
        .signed_by(&key, &root)
        .unwrap()
        .pem();
    let error = validate(&leaf, None, SystemTime::now()).unwrap_err();
    assert!(matches!(error, InvalidCa::NotACa { .. }), "{error}");
    assert!(error.to_string().contains("is not a CA certificate"));
}

#[test]
fn expired_and_future_cas_are_refused() {
    let (expired, _) = ca("Old CA", (-30, -1));
    let error = validate(&expired, None, SystemTime::now()).unwrap_err();
    assert!(matches!(error, InvalidCa::Expired { .. }), "{error}");
    let (future, _) = ca("Future CA", (2, 30));
    let error = validate(&future, None, SystemTime::now()).unwrap_err();
    assert!(matches!(error, InvalidCa::NotYetValid { .. }), "{error}");
    let (fine, _) = ca("Fine CA", (-1, 1));
    let later = SystemTime::now() + Duration::from_secs(3 * 86_400);
    assert!(matches!(
        validate(&fine, None, later),
        Err(InvalidCa::Expired { .. })
    ));
}

#[test]
fn garbage_is_refused_clearly() {
    assert_eq!(
        validate("", None, SystemTime::now()).unwrap_err(),
        InvalidCa::NoCertificate("certificate")
    );
    let error = validate(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        None,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(error, InvalidCa::Unparseable { .. }), "{error}");
}
