//! The TLS certificates the controller serves with (the injection webhook, and ADS when
//! `--xds-tls-host` asks for it), made and rotated by the controller itself, or read from files
//! that cert-manager keeps up to date.
//!
//! Made by the controller: a CA kept in a Secret in the controller's namespace (the first
//! replica to start creates it; the API server lets only one create win), and a serving
//! certificate per replica and listener, issued from that CA for the listener's host names and
//! re-issued every renewal period (a day by default), valid for seven times as long. For the
//! webhook, the leader keeps the webhook configuration's `caBundle` equal to the CA
//! certificate; sidecars get the same CA in their bootstrap to verify the ADS server.

use std::sync::Arc;
use std::time::Duration;

pub use crate::https::ServingCertificate;
use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How many renewal periods a serving certificate stays valid: a replica that cannot renew
/// keeps working for a week at the default period.
const VALIDITY_PERIODS: u32 = 7;
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How often the file certificate is re-read, and the caBundle checked.
const CHECK_EVERY: Duration = Duration::from_secs(10);
const CA_CERT_KEY: &str = "ca.crt";
const CA_KEY_KEY: &str = "ca.key";

/// Where a serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertificateSource {
    /// `tls.crt` and `tls.key` (and the issuer's `ca.crt`, when present) in a directory, such
    /// as a cert-manager Secret volume, re-read as they change; cert-manager also keeps the
    /// webhook's caBundle.
    Files(std::path::PathBuf),
    /// A certificate file and its key file (and the issuer's certificate, for clients to
    /// trust), re-read as they change.
    Pair {
        certificate: std::path::PathBuf,
        key: std::path::PathBuf,
        ca: Option<std::path::PathBuf>,
    },
    /// Made by the controller, from a CA in Secret `secret` of `namespace`.
    Managed {
        namespace: String,
        secret: String,
        /// DNS names and IP addresses the serving certificate is valid for.
        hosts: Vec<String>,
        /// The MutatingWebhookConfiguration whose caBundle the leader keeps in sync, for the
        /// webhook's certificate.
        configuration: Option<String>,
        /// How often the serving certificate is replaced.
        renew_every: Duration,
    },
}

/// Keeps `serving` current until `shutdown`. `client` is needed for a managed certificate.
pub async fn run(
    source: CertificateSource,
    client: Option<Client>,
    serving: Arc<ServingCertificate>,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match source {
        CertificateSource::Files(dir) => {
            let ca = dir.join("ca.crt");
            let ca = ca.exists().then_some(ca);
            keep_reading(
                &dir.join("tls.crt"),
                &dir.join("tls.key"),
                ca,
                &serving,
                &shutdown,
            )
            .await;
            Ok(())
        }
        CertificateSource::Pair {
            certificate,
            key,
            ca,
        } => {
            keep_reading(&certificate, &key, ca, &serving, &shutdown).await;
            Ok(())
        }
        CertificateSource::Managed {
            namespace,
            secret,
            hosts,
            configuration,
            renew_every,
        } => {
            let client =
                client.context("a certificate made by the controller needs --kubernetes")?;
            let validity = renew_every * VALIDITY_PERIODS;
            let ca = load_or_create_ca(&client, &namespace, &secret).await?;
            serving.set_ca_pem(&ca.cert_pem);
            let issued = std::time::Instant::now();
            let (chain, key) = ca.issue(&hosts, validity)?;
            serving.set_pem(&chain, &key)?;
            tracing::info!(?hosts, "serving certificate issued");
            let mut last_issue = issued;
            loop {
                let leading = *leader.borrow();
                if leading
                    && let Some(configuration) = &configuration
                    && let Err(error) = sync_ca_bundle(&client, configuration, &ca.cert_pem).await
                {
                    tracing::warn!(%error, configuration, "cannot keep the webhook caBundle in sync; retrying");
                    metrics.kubernetes_write_errors.inc();
                }
                if last_issue.elapsed() >= renew_every {
                    match ca
                        .issue(&hosts, validity)
                        .and_then(|(chain, key)| serving.set_pem(&chain, &key))
                    {
                        Ok(()) => {
                            tracing::info!(?hosts, "serving certificate renewed");
                            last_issue = std::time::Instant::now();
                        }
                        Err(error) => {
                            tracing::error!(%error, ?hosts, "cannot renew the serving certificate")
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(CHECK_EVERY.min(renew_every)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// Loads the certificate, key and (optionally) CA files into `serving` every few seconds until
/// `shutdown`; a file that cannot be read or used keeps the last good certificate.
async fn keep_reading(
    certificate: &std::path::Path,
    key: &std::path::Path,
    ca: Option<std::path::PathBuf>,
    serving: &ServingCertificate,
    shutdown: &CancellationToken,
) {
    loop {
        let loaded = std::fs::read_to_string(certificate)
            .with_context(|| format!("cannot read {}", certificate.display()))
            .and_then(|chain| {
                let key_pem = std::fs::read_to_string(key)
                    .with_context(|| format!("cannot read {}", key.display()))?;
                serving.set_pem(&chain, &key_pem)
            })
            .and_then(|()| match &ca {
                // Sidecars and ConfigMaps get this file: certificates only, never a key.
                Some(ca) => std::fs::read_to_string(ca)
                    .with_context(|| format!("cannot read {}", ca.display()))
                    .and_then(|pem| {
                        crate::trust::validate::certificates_only(&pem)
                            .with_context(|| format!("refusing CA file {}", ca.display()))
                    })
                    .map(|pem| serving.set_ca_pem(&pem)),
                None => Ok(()),
            });
        if let Err(error) = loaded {
            tracing::error!(certificate = %certificate.display(), error = crate::logging::causes(error.as_ref()), "cannot load the serving certificate; keeping the last one");
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The controller CA (webhook and xDS serving certificates): certificate and key, PEM.
pub struct ControllerCa {
    pub cert_pem: String,
    key_pem: String,
}

impl ControllerCa {
    fn generate() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "lattice-xds controller CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A serving certificate for `hosts` (DNS names or IP addresses): chain and key, PEM.
    pub fn issue(&self, hosts: &[String], validity: Duration) -> anyhow::Result<(String, String)> {
        let ca_key =
            KeyPair::from_pem(&self.key_pem).context("the controller CA key is not PEM")?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .context("the controller CA certificate is not usable")?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            hosts
                .first()
                .cloned()
                .unwrap_or_else(|| "lattice-xds".to_string()),
        );
        params.subject_alt_names = hosts
            .iter()
            .map(|host| match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => host.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .context("a serving host is not a valid DNS name")?;
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        params.not_after = time::OffsetDateTime::now_utc() + validity;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The CA from the Secret, creating both when there is none yet.
async fn load_or_create_ca(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<ControllerCa> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    loop {
        if let Some(secret) = api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the controller CA Secret {namespace}/{name}"))?
        {
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .and_then(|value| String::from_utf8(value.0.clone()).ok())
                    .with_context(|| format!("Secret {namespace}/{name} has no {key}"))
            };
            return Ok(ControllerCa {
                cert_pem: field(CA_CERT_KEY)?,
                key_pem: field(CA_KEY_KEY)?,
            });
        }
        let ca = ControllerCa::generate()?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            data: Some(
                [
                    (
                        CA_CERT_KEY.to_string(),
                        ByteString(ca.cert_pem.clone().into_bytes()),
                    ),
                    (
                        CA_KEY_KEY.to_string(),
                        ByteString(ca.key_pem.clone().into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(namespace, name, "controller CA created");
                return Ok(ca);
            }
            // Another replica created it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot create the controller CA Secret {namespace}/{name}")
                });
            }
        }
    }
}

/// Sets every webhook's caBundle in `configuration` to `ca_pem` where it differs.
async fn sync_ca_bundle(client: &Client, configuration: &str, ca_pem: &str) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(current) = api.get_opt(configuration).await? else {
        tracing::debug!(configuration, "no webhook configuration yet");
        return Ok(());
    };
    let webhooks = current.webhooks.unwrap_or_default();
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    if webhooks
        .iter()
        .all(|webhook| webhook.client_config.ca_bundle.as_ref() == Some(&wanted))
    {
        return Ok(());
    }
    let patched: Vec<_> = webhooks
        .into_iter()
        .map(|mut webhook| {
            webhook.client_config.ca_bundle = Some(wanted.clone());
            webhook
        })
        .collect();
    // The resourceVersion makes the patch fail, rather than undo, a concurrent change.
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": current.metadata.resource_version },
        "webhooks": patched,
    });
    api.patch(
        configuration,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(configuration, "webhook caBundle updated");
    Ok(())
}
