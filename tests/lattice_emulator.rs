//! The local VPC Lattice emulator on its own, with requests signed by the `aws-sigv4` crate (an
//! implementation independent of the project's signer): the walkthrough's allowed and denied
//! calls, and the requests Lattice refuses before any policy — unsigned, a wrong key, a replay
//! outside the clock skew, a signed header altered in transit.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::process::Running;
use support::{eventually, free_port, lattice_xds};

const REGION: &str = "ap-northeast-2";
const HOST: &str = "demo-cluster2.example.com";

/// One caller of the identities file.
struct Caller {
    key: &'static str,
    secret: &'static str,
    token: &'static str,
    arn: &'static str,
}

const FROM_CLUSTER1: Caller = Caller {
    key: "ASIAEMULATEDCLUSTER1",
    secret: "cluster1-secret-key-0000000000000000000000",
    token: "cluster1-session-token",
    arn: "arn:aws:sts::890742582773:assumed-role/vpc-lattice-sigv4-client/eks-eks-cluste-demo-clust-1111",
};

const FROM_CLUSTER2: Caller = Caller {
    key: "ASIAEMULATEDCLUSTER2",
    secret: "cluster2-secret-key-0000000000000000000000",
    token: "cluster2-session-token",
    arn: "arn:aws:sts::890742582773:assumed-role/vpc-lattice-sigv4-client/eks-eks-cluste-demo-clust-2222",
};

fn identities() -> String {
    let entry = |caller: &Caller, cluster: &str| {
        format!(
            "- name: {cluster}/apps/demo\n  accessKeyId: {}\n  secretAccessKey: {}\n  sessionToken: {}\n  arn: {}\n  \
             tags: {{eks-cluster-name: {cluster}, kubernetes-namespace: apps}}\n",
            caller.key, caller.secret, caller.token, caller.arn
        )
    };
    entry(&FROM_CLUSTER1, "eks-cluster1") + &entry(&FROM_CLUSTER2, "eks-cluster2")
}

struct Setup {
    _dir: tempfile::TempDir,
    _emulator: Running,
    port: u16,
    ca_pem: String,
}

/// A CA and a certificate for the custom domain, the demo-cluster2 backend, and the emulator
/// serving examples/cluster2.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["*.example.com".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("identities.yaml"), identities()).unwrap();

    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async {
        "Requesting to Pod(demo-cluster2-v1): Hello from demo-cluster2-v1\n"
    });
    tokio::spawn(async move { axum::serve(backend, app).await });

    let port = free_port();
    let mut command = std::process::Command::new(lattice_xds());
    command.args([
        "emulate-lattice",
        "--manifests",
        "examples/cluster2",
        "--identities",
        dir.path().join("identities.yaml").to_str().unwrap(),
        "--tls-cert",
        dir.path().join("tls.crt").to_str().unwrap(),
        "--tls-key",
        dir.path().join("tls.key").to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--backend",
        &format!("demo-cluster2-v1=http://127.0.0.1:{backend_port}"),
        "--region",
        REGION,
        "--account",
        "890742582773",
    ]);
    let emulator = Running::spawn(&mut command, &dir.path().join("emulator.log"));
    eventually("the emulator", Duration::from_secs(20), || async {
        emulator
            .log_text()
            .contains("VPC Lattice emulator ready")
            .then_some(())
    })
    .await;
    Setup {
        _dir: dir,
        _emulator: emulator,
        port,
        ca_pem: ca.pem(),
    }
}

/// The headers `caller` adds to a GET of `path` at `time`, by the aws-sigv4 crate.
fn signature(
    caller: &Caller,
    path: &str,
    extra: &[(&str, &str)],
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = Credentials::new(
        caller.key,
        caller.secret,
        Some(caller.token.to_string()),
        None,
        "test",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("vpc-lattice-svcs")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("https://{HOST}{path}");
    let mut headers = vec![("host", HOST)];
    headers.extend_from_slice(extra);
    let request = SignableRequest::new(
        "GET",
        &url,
        headers.into_iter(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A GET over TLS (SNI and Host the custom domain); status and body.
async fn get(setup: &Setup, path: &str, headers: &[(String, String)]) -> (u16, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(setup.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", setup.port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .expect("the emulator presents the custom domain's certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header("host", HOST);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_authenticates_and_authorizes_as_lattice_does() {
    let setup = setup().await;
    let now = SystemTime::now();

    // eks-cluster1's apps namespace may call demo-cluster2.
    let (status, body) = get(&setup, "/", &signature(&FROM_CLUSTER1, "/", &[], now)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "Requesting to Pod(demo-cluster2-v1): Hello from demo-cluster2-v1\n"
        )
    );

    // eks-cluster2's may not: the service's own policy refuses it.
    let (status, body) = get(&setup, "/", &signature(&FROM_CLUSTER2, "/", &[], now)).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        format!(
            "AccessDeniedException: User: {} is not authorized to perform: vpc-lattice-svcs:Invoke on resource: \
             arn:aws:vpc-lattice:{REGION}:890742582773:service/svc-0c2b8a7f5e1d94a36/ because no service-based \
             policy allows the vpc-lattice-svcs:Invoke action",
            FROM_CLUSTER2.arn
        )
    );

    // Unsigned: an anonymous caller, refused by the service network's policy.
    let (status, body) = get(&setup, "/", &[]).await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with("AccessDeniedException: User: anonymous is not authorized"),
        "{body}"
    );
    assert!(
        body.ends_with("because no network-based policy allows the vpc-lattice-svcs:Invoke action"),
        "{body}"
    );

    // Signed with the wrong secret key.
    let forged = Caller {
        secret: "not-the-secret-key",
        ..FROM_CLUSTER1
    };
    let (status, body) = get(&setup, "/", &signature(&forged, "/", &[], now)).await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with(
            "InvalidSignatureException: The request signature we calculated does not match"
        ),
        "{body}"
    );

    // A correct signature replayed ten minutes later.
    let old = now - Duration::from_secs(600);
    let (status, body) = get(&setup, "/", &signature(&FROM_CLUSTER1, "/", &[], old)).await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with("InvalidSignatureException: Signature expired"),
        "{body}"
    );

    // A signed header altered in transit.
    let mut altered = signature(&FROM_CLUSTER1, "/", &[("x-team", "payments")], now);
    altered.push(("x-team".to_string(), "billing".to_string()));
    let (status, body) = get(&setup, "/", &altered).await;
    assert_eq!(status, 403);
    assert!(body.starts_with("InvalidSignatureException"), "{body}");

    // A header named as signed but missing.
    let mut missing = signature(&FROM_CLUSTER1, "/", &[("x-team", "payments")], now);
    missing.retain(|(name, _)| name != "x-amz-security-token");
    let (status, body) = get(&setup, "/", &missing).await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with(
            "IncompleteSignatureException: 'x-amz-security-token' is named as a SignedHeader"
        ),
        "{body}"
    );
}
