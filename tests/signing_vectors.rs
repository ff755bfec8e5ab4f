//! The AWS signing test suite (`aws-signing-test-suite/v4` and `v4a`, shipped in the
//! `aws-sigv4` crate's package, found through `cargo metadata`): every case with a context
//! reproduces the canonical request, the string to sign and the signature (for SigV4A, whose
//! signatures are randomized, the derived public key and a signature that verifies).
//!
//! Only header signing applies: the signer never makes presigned (query-string) URLs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use lattice_xds::signer::canonical::{PathRules, Request};
use lattice_xds::signer::sigv4::{Options, Payload, Scope, SigV4};
use lattice_xds::signer::sigv4a::SigV4a;
use lattice_xds::signer::time::parse_rfc3339_utc;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

fn suite_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|package| package["name"] == "aws-sigv4")
        .expect("aws-sigv4 is a dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    Path::new(&manifest)
        .parent()
        .unwrap()
        .join("aws-signing-test-suite")
}

/// One test case: its context and its parsed `request.txt`.
struct Case {
    name: String,
    dir: PathBuf,
    context: serde_json::Value,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Case {
    fn load(dir: &Path) -> Option<Case> {
        let context = std::fs::read_to_string(dir.join("context.json")).ok()?;
        let context: serde_json::Value = serde_json::from_str(&context).unwrap();
        let raw = std::fs::read(dir.join("request.txt")).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let (method, rest) = request_line.split_once(' ').unwrap();
        let path = rest.strip_suffix(" HTTP/1.1").unwrap();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // A folded continuation line belongs to the previous header's value.
                let last = headers.last_mut().unwrap();
                last.1.push('\n');
                last.1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_string(), value.to_string()));
            }
        }
        Some(Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            dir: dir.to_path_buf(),
            context,
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: body.as_bytes().to_vec(),
        })
    }

    /// Records a mismatch with the suite's file for each (what, ours, file) check.
    fn compare(&self, checks: &[(&str, &str, &str)], failures: &mut Vec<String>) {
        for (what, ours, file) in checks {
            let expected = self.expected(file);
            if *ours != expected.trim_end_matches('\n') {
                failures.push(format!(
                    "{}: {what}\n--- expected\n{expected}\n--- ours\n{ours}",
                    self.name
                ));
            }
        }
    }

    fn expected(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap()
    }

    fn credentials(&self) -> Credentials {
        let c = &self.context["credentials"];
        Credentials::new(
            c["access_key_id"].as_str().unwrap(),
            c["secret_access_key"].as_str().unwrap(),
            c["token"].as_str().map(str::to_string),
            None,
            "vectors",
        )
    }

    fn time(&self) -> SystemTime {
        parse_rfc3339_utc(self.context["timestamp"].as_str().unwrap()).unwrap()
    }

    fn region(&self) -> &str {
        self.context["region"].as_str().unwrap()
    }

    fn service(&self) -> &str {
        self.context["service"].as_str().unwrap()
    }

    /// Runs `check` with the request and the options the context asks for.
    fn with_request<T>(&self, check: impl FnOnce(&Request<'_>, &Options<'_>) -> T) -> T {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let authority = pairs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| *value)
            .unwrap();
        let request = Request {
            method: &self.method,
            path: &self.path,
            authority,
            headers: &pairs,
        };
        let body_hash = hex::encode(Sha256::digest(&self.body));
        let options = Options {
            payload: Payload::Hashed {
                sha256: &body_hash,
                header: self.context["sign_body"].as_bool().unwrap_or(false),
            },
            sign_session_token: !self.context["omit_session_token"]
                .as_bool()
                .unwrap_or(false),
            path: PathRules {
                normalize: self.context["normalize"].as_bool().unwrap_or(true),
            },
            every_header: false,
        };
        check(&request, &options)
    }
}

fn cases(version: &str) -> (Vec<Case>, Vec<String>) {
    let dir = suite_dir().join(version);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    let mut cases = Vec::new();
    let mut without_context = Vec::new();
    for entry in entries {
        match Case::load(&entry) {
            Some(case) => cases.push(case),
            None => without_context.push(entry.file_name().unwrap().to_string_lossy().into_owned()),
        }
    }
    (cases, without_context)
}

/// `v4/get-space-normalized` sends `/example%20space/` yet expects it encoded once, which its
/// context does not ask for (every other case encodes paths twice, as VPC Lattice does); the
/// `v4a` copy of the case sends a raw space and is checked.
const INCONSISTENT_V4: [&str; 1] = ["get-space-normalized"];

#[test]
fn sigv4_reproduces_every_header_signing_case() {
    let (cases, without_context) = cases("v4");
    // Two cases ship a canonical request with no context (no credentials, time or region),
    // so nothing can be signed for them.
    assert!(
        without_context.len() <= 2,
        "cases without context: {without_context:?}"
    );
    assert!(cases.len() >= 38, "only {} cases found", cases.len());
    let signer = SigV4::default();
    let mut failures = Vec::new();
    for case in cases
        .iter()
        .filter(|case| !INCONSISTENT_V4.contains(&case.name.as_str()))
    {
        let scope = Scope {
            region: case.region(),
            service: case.service(),
        };
        let workings = case.with_request(|request, options| {
            signer.workings(request, &case.credentials(), scope, case.time(), options)
        });
        case.compare(
            &[
                (
                    "canonical request",
                    workings.canonical_request.as_str(),
                    "header-canonical-request.txt",
                ),
                (
                    "string to sign",
                    workings.string_to_sign.as_str(),
                    "header-string-to-sign.txt",
                ),
                (
                    "signature",
                    workings.signature.as_str(),
                    "header-signature.txt",
                ),
            ],
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sigv4a_reproduces_every_header_signing_case() {
    let (cases, without_context) = cases("v4a");
    assert!(
        without_context.is_empty(),
        "cases without context: {without_context:?}"
    );
    assert!(cases.len() >= 38, "only {} cases found", cases.len());
    let signer = SigV4a::default();
    let mut failures = Vec::new();
    for case in &cases {
        let scope = Scope {
            region: case.region(),
            service: case.service(),
        };
        let credentials = case.credentials();
        let workings = case
            .with_request(|request, options| {
                signer.workings(request, &credentials, scope, case.time(), options)
            })
            .unwrap();
        case.compare(
            &[
                (
                    "canonical request",
                    workings.canonical_request.as_str(),
                    "header-canonical-request.txt",
                ),
                (
                    "string to sign",
                    workings.string_to_sign.as_str(),
                    "header-string-to-sign.txt",
                ),
            ],
            &mut failures,
        );
        let public: serde_json::Value =
            serde_json::from_str(&case.expected("public-key.json")).unwrap();
        let point = signer
            .verifying_key(&credentials)
            .unwrap()
            .to_sec1_point(false);
        let xy = hex::encode(&point.as_bytes()[1..]);
        let expected_xy = format!(
            "{}{}",
            public["X"].as_str().unwrap(),
            public["Y"].as_str().unwrap()
        );
        if xy != expected_xy {
            failures.push(format!(
                "{}: derived public key {xy}, expected {expected_xy}",
                case.name
            ));
        }
        let key = signer.verifying_key(&credentials).unwrap();
        for (whose, signature) in [
            ("our", workings.signature.clone()),
            (
                "the suite's",
                case.expected("header-signature.txt").trim().to_string(),
            ),
        ] {
            let der = (0..signature.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>();
            let verified = Signature::from_der(&der)
                .map(|signature| {
                    key.verify(workings.string_to_sign.as_bytes(), &signature)
                        .is_ok()
                })
                .unwrap_or(false);
            if !verified {
                failures.push(format!("{}: {whose} signature does not verify", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
