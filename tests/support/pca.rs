//! ACM PCA for the tests: `moto_server` (PyPI `moto[server]`, installed by
//! `scripts/install-python-peers.sh`) on 127.0.0.1, which issues real X.509 certificates; a
//! gate in front of it that can refuse connections (an outage the controller cannot tell from
//! a dead endpoint); and helpers that make CAs and leaves through the AWS SDK.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::primitives::Blob;
use aws_sdk_acmpca::types::{
    Asn1Subject, CertificateAuthorityConfiguration, CertificateAuthorityType, KeyAlgorithm,
    SigningAlgorithm, Validity, ValidityPeriodType,
};
use rcgen::{CertificateParams, KeyPair};

use super::process::Running;
use super::{eventually, free_port, http, python};

pub const ROOT_TEMPLATE: &str = "arn:aws:acm-pca:::template/RootCACertificate/V1";
pub const END_ENTITY_TEMPLATE: &str = "arn:aws:acm-pca:::template/EndEntityCertificate/V1";
pub const REGION: &str = "us-east-1";

/// `moto_server` on a free loopback port.
pub struct Moto {
    pub process: Running,
    pub port: u16,
}

impl Moto {
    pub async fn start(dir: &Path) -> Moto {
        let port = free_port();
        let server = python::binary().with_file_name("moto_server");
        let mut command = Command::new(server);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Running::spawn(&mut command, &dir.join("moto.log"));
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        eventually("moto_server to answer", Duration::from_secs(30), || async {
            http::get_url(&url).await.filter(|r| r.status == 200)
        })
        .await;
        Moto { process, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An ACM PCA client with test credentials.
    pub async fn client(&self) -> Client {
        let config = aws_sdk_acmpca::Config::builder()
            .behavior_version(aws_sdk_acmpca::config::BehaviorVersion::latest())
            .region(aws_sdk_acmpca::config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .http_client(lattice_xds::aws::https_client())
            .credentials_provider(aws_sdk_acmpca::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build();
        Client::from_conf(config)
    }
}

/// A TCP forwarder to moto that can be closed: closed, it accepts and drops every connection.
pub struct Gate {
    pub port: u16,
    open: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn start(target_port: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let is_open = Arc::clone(&open);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(async move {
                    let target = format!("127.0.0.1:{target_port}");
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { port, open, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates a root CA, has it sign its own CSR with the `RootCACertificate/V1` template, and
/// imports the result, as the reference walkthrough's Terraform does. Returns the CA's ARN.
pub async fn create_root_ca(client: &Client, common_name: &str) -> String {
    let configuration = CertificateAuthorityConfiguration::builder()
        .key_algorithm(KeyAlgorithm::Rsa2048)
        .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
        .subject(Asn1Subject::builder().common_name(common_name).build())
        .build()
        .unwrap();
    let arn = client
        .create_certificate_authority()
        .certificate_authority_configuration(configuration)
        .certificate_authority_type(CertificateAuthorityType::Root)
        .send()
        .await
        .expect("create the CA")
        .certificate_authority_arn
        .expect("CA ARN");
    let csr = client
        .get_certificate_authority_csr()
        .certificate_authority_arn(&arn)
        .send()
        .await
        .expect("the CA's CSR")
        .csr
        .expect("CSR");
    let certificate = issue(client, &arn, csr.as_bytes(), ROOT_TEMPLATE).await.0;
    import(client, &arn, &certificate).await;
    arn
}

/// Imports `pem` as the CA's certificate (moto refuses only what does not parse).
pub async fn import(client: &Client, ca_arn: &str, pem: &str) {
    client
        .import_certificate_authority_certificate()
        .certificate_authority_arn(ca_arn)
        .certificate(Blob::new(pem.as_bytes()))
        .send()
        .await
        .expect("import the CA certificate");
}

/// A leaf for `hosts` issued by the CA from a CSR made here: (certificate then chain as PEM,
/// PKCS#8 key).
pub async fn issue_leaf(client: &Client, ca_arn: &str, hosts: &[&str]) -> (String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
    let csr = CertificateParams::new(names)
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let (certificate, chain) = issue(client, ca_arn, csr.as_bytes(), END_ENTITY_TEMPLATE).await;
    let mut pem = certificate.trim_end().to_string();
    pem.push('\n');
    if let Some(chain) = chain {
        pem.push_str(chain.trim_end());
        pem.push('\n');
    }
    (pem, key.serialize_der())
}

async fn issue(
    client: &Client,
    ca_arn: &str,
    csr: &[u8],
    template: &str,
) -> (String, Option<String>) {
    let certificate_arn = client
        .issue_certificate()
        .certificate_authority_arn(ca_arn)
        .csr(Blob::new(csr))
        .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
        .template_arn(template)
        .validity(
            Validity::builder()
                .value(365)
                .r#type(ValidityPeriodType::Days)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("issue a certificate")
        .certificate_arn
        .expect("certificate ARN");
    let issued = client
        .get_certificate()
        .certificate_authority_arn(ca_arn)
        .certificate_arn(certificate_arn)
        .send()
        .await
        .expect("get the issued certificate");
    (
        issued.certificate.expect("certificate"),
        issued.certificate_chain,
    )
}

/// The controller's own AWS credentials (moto accepts any), and nothing from outside the test.
pub fn controller_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "AWS_CONFIG_FILE",
            dir.join("no-aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials").display().to_string(),
        ),
    ]
}
