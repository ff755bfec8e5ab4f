//! The signer's credentials, as a pod on EKS gets them: from a local Pod Identity agent with
//! the service-account token re-read at every refresh. Rotation is picked up before expiry; an
//! agent outage makes the signer refuse (503, with the reason) once the credentials expire,
//! and it recovers when the agent returns. Secrets never reach the logs. It signs only for the
//! service and regions it was given: anything else is a 403 with the reason, counted.

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime};

use support::signing::{Issued, PodIdentityAgent, Signer, isolate_aws};
use support::{eventually, lattice_xds};

const WAIT: Duration = Duration::from_secs(20);

fn issued(key: &str, secret: &str, token: &str, lifetime: Duration) -> Issued {
    Issued {
        access_key_id: key.to_string(),
        secret_access_key: secret.to_string(),
        token: token.to_string(),
        expiration: SystemTime::now() + lifetime,
    }
}

/// The access key of the credential a successful `/v1/sign` answer used.
fn signed_with(answer: &support::http::HttpResponse) -> Option<String> {
    if answer.status != 200 {
        return None;
    }
    let authorization = answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix("authorization: "))?;
    let credential = authorization.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_string())
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_rotation_outage_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "token-one").unwrap();
    let secrets = [
        "first/secret+KEY",
        "second/secret+KEY",
        "third/secret+KEY",
        "SESSION-TOKEN-1",
        "SESSION-TOKEN-2",
        "SESSION-TOKEN-3",
    ];
    let first_credentials = issued("ASIAFIRST", secrets[0], secrets[3], Duration::from_secs(6));
    let first_expiry = first_credentials.expiration;
    let agent = PodIdentityAgent::start("token-one", first_credentials).await;
    let signer = Signer::start(
        dir.path(),
        "signer",
        &["--region=eu-west-1"],
        &agent.pod_env(&token_file),
    )
    .await;

    let first = eventually("a signature with the first credentials", WAIT, || async {
        signed_with(&signer.sign("svc.example.com", "/").await).filter(|key| key == "ASIAFIRST")
    })
    .await;
    assert_eq!(first, "ASIAFIRST");
    let answer = signer.sign("svc.example.com", "/").await;
    assert!(
        answer
            .body
            .contains("x-amz-security-token: SESSION-TOKEN-1\n"),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains("x-amz-content-sha256: UNSIGNED-PAYLOAD\n"),
        "{}",
        answer.body
    );

    // Rotation: a new service-account token and new credentials. The first ones expire six
    // seconds after issue; the signer must switch before that, re-reading the token file.
    std::fs::write(&token_file, "token-two").unwrap();
    agent.expect_token("token-two");
    agent.issue(issued(
        "ASIASECOND",
        secrets[1],
        secrets[4],
        Duration::from_secs(5),
    ));
    eventually("a signature with the rotated credentials", WAIT, || async {
        signed_with(&signer.sign("svc.example.com", "/").await).filter(|key| key == "ASIASECOND")
    })
    .await;
    assert!(
        SystemTime::now() < first_expiry,
        "the rotated credentials were picked up only after the first ones expired"
    );
    assert!(agent.seen_tokens().contains(&"token-two".to_string()));

    // Outage: the agent fails; once the second credentials expire, requests are refused with
    // the agent's failure as the reason.
    agent.fail(true);
    let refused = eventually("a refusal that names the agent's failure", WAIT, || async {
        Some(signer.sign("svc.example.com", "/").await)
            .filter(|answer| answer.status == 503 && !answer.body.contains("under way"))
    })
    .await;
    assert!(
        refused
            .body
            .starts_with("lattice-xds signer: no AWS credentials: the last ones expired"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("500"),
        "the reason names the agent's answer: {}",
        refused.body
    );
    let metrics = signer.metrics().await;
    assert!(
        metrics
            .contains("lattice_xds_signer_requests_refused_total{reason=\"credentials_expired\"}"),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "lattice_xds_signer_credential_load_failures_total"
        ) >= 1,
        "{metrics}"
    );

    // Recovery.
    agent.issue(issued(
        "ASIATHIRD",
        secrets[2],
        secrets[5],
        Duration::from_secs(3600),
    ));
    agent.fail(false);
    eventually("signatures again once the agent is back", WAIT, || async {
        signed_with(&signer.sign("svc.example.com", "/").await).filter(|key| key == "ASIATHIRD")
    })
    .await;
    let metrics = signer.metrics().await;
    let expires_in = metric(&metrics, "lattice_xds_signer_credentials_expire_in_seconds");
    assert!(
        (3500..=3600).contains(&expires_in),
        "expires in {expires_in} s"
    );

    // Nothing secret was logged, at debug level, through all of that.
    let log = signer.process.log_text();
    assert!(log.contains("loaded AWS credentials"), "{log}");
    for secret in secrets
        .iter()
        .chain(["token-one", "token-two", "Signature="].iter())
    {
        assert!(
            !log.contains(secret),
            "the signer's log contains {secret:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_signer_refuses_instead_of_signing() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::start(dir.path(), "signer", &["--region=eu-west-1"], &[]).await;
    let refused = eventually("the credential chain to give up", WAIT, || async {
        Some(signer.sign("svc.example.com", "/").await).filter(|answer| {
            answer.body.contains("no AWS credentials: ") && !answer.body.contains("still loading")
        })
    })
    .await;
    assert_eq!(refused.status, 503);
    assert!(!refused.body.contains("authorization:"), "{}", refused.body);
    let ready = support::http::get_url(&signer.url("/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "{}", ready.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_credentials_sign_and_strip_what_the_application_sent() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIASTATIC".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "static/secret+KEY".to_string()),
        ("AWS_REGION", "ap-northeast-2".to_string()),
    ];
    let signer = Signer::start(dir.path(), "signer", &[], &env).await;
    let description = "POST\n/orders?id=7\nhost: svc.example.com:443\nauthorization: Bearer app-token\n\
                       x-amz-date: 19990101T000000Z\nx-amz-meta-app: smuggled\ncontent-type: text/plain\n";
    let answer = eventually("a signature", WAIT, || async {
        support::http::request(signer.http, "POST", "signer", "/v1/sign", &[], description)
            .await
            .filter(|answer| answer.status == 200)
    })
    .await;
    let lines: Vec<&str> = answer.body.lines().collect();
    let authorization = lines
        .iter()
        .find_map(|l| l.strip_prefix("authorization: "))
        .unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIASTATIC/")
            && authorization.contains("/ap-northeast-2/vpc-lattice-svcs/aws4_request")
            && authorization
                .contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"),
        "{authorization}"
    );
    assert!(lines.contains(&"-x-amz-meta-app"), "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("19990101") || l.contains("app-token")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("x-amz-security-token")),
        "no token, none set"
    );
    let log = signer.process.log_text();
    assert!(
        !log.contains("static/secret+KEY"),
        "the secret key was logged"
    );

    // Another service, or another region, than the signer was given: 403, with the reason.
    for (header, value, reason) in [
        ("x-lattice-xds-service", "s3", "service_not_allowed"),
        ("x-lattice-xds-region", "us-east-1", "region_not_allowed"),
    ] {
        let answer = support::http::request(
            signer.http,
            "POST",
            "signer",
            "/v1/sign",
            &[(header, value)],
            description,
        )
        .await
        .expect("an answer");
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(
            answer.body.contains("is not one this signer signs for"),
            "{}",
            answer.body
        );
        let metrics = support::http::get_url(&signer.url("/metrics"))
            .await
            .unwrap()
            .body;
        let counted = format!("lattice_xds_signer_requests_refused_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&counted), "{counted} not in\n{metrics}");
    }
}

#[test]
fn the_signer_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(lattice_xds());
    command.args([
        "signer",
        "--grpc-listen=0.0.0.0:0",
        "--http-listen=127.0.0.1:0",
    ]);
    isolate_aws(&mut command, dir.path());
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 (--grpc-listen)")
            && stderr.contains("--allow-remote"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_only_the_proxys_uid() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sign.sock");
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path()).unwrap());
    let admin = format!("127.0.0.1:{}", support::free_port());
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIASTATIC".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "static/secret+KEY".to_string()),
        ("AWS_REGION", "ap-northeast-2".to_string()),
    ];
    // Envoy's uid is someone else's: this process is refused.
    let grpc = format!("127.0.0.1:{}", support::free_port());
    let signer = Signer::start_on(
        dir.path(),
        "signer",
        grpc.parse().unwrap(),
        admin.parse().unwrap(),
        &[
            &format!("--http-socket={}", socket.display()),
            &format!("--socket-peer-uid={}", me + 1),
            &format!("--admin-listen={admin}"),
        ],
        &env,
    )
    .await;
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let request = "POST /v1/sign HTTP/1.1\r\nhost: signer\r\ncontent-length: 2\r\n\r\nGET";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "another uid got an answer: {}",
        String::from_utf8_lossy(&answer)
    );
    let metrics = support::http::get_url(&signer.url("/metrics"))
        .await
        .unwrap()
        .body;
    assert!(
        metrics
            .contains("lattice_xds_signer_requests_refused_total{reason=\"peer_not_allowed\"} 1"),
        "{metrics}"
    );
    assert!(
        signer
            .process
            .log_text()
            .contains("refused a connection from another uid"),
        "the refusal is logged"
    );
}
