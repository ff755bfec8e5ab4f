//! The webhook's TLS certificate, made and rotated by the controller itself, or read from files
//! that cert-manager keeps up to date.
//!
//! Made by the controller: a CA kept in a Secret in the controller's namespace (the first
//! replica to start creates it; the API server lets only one create win), and a serving
//! certificate per replica, issued from that CA for the webhook's host names and re-issued
//! every `--webhook-renew-every` (a day by default), valid for seven times as long. The leader keeps the webhook configuration's `caBundle` equal to the
//! CA certificate.

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

/// Where the webhook's certificate comes from.
#[derive(Clone, Debug)]
pub enum CertificateSource {
    /// `tls.crt` and `tls.key` in a directory (a cert-manager Secret volume), re-read as they
    /// change; cert-manager also keeps the caBundle.
    Files(std::path::PathBuf),
    /// Made by the controller, from a CA in Secret `secret` of `namespace`.
    Managed {
        namespace: String,
        secret: String,
        /// DNS names and IP addresses the serving certificate is valid for.
        hosts: Vec<String>,
        /// The MutatingWebhookConfiguration whose caBundle the leader keeps in sync.
        configuration: String,
        /// How often the serving certificate is replaced.
        renew_every: Duration,
    },
}

/// Keeps `serving` current until `shutdown`.
pub async fn run(
    source: CertificateSource,
    client: Client,
    serving: Arc<ServingCertificate>,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match source {
        CertificateSource::Files(dir) => loop {
            let read = std::fs::read_to_string(dir.join("tls.crt")).and_then(|chain| {
                std::fs::read_to_string(dir.join("tls.key")).map(|key| (chain, key))
            });
            match read
                .map_err(anyhow::Error::from)
                .and_then(|(chain, key)| serving.set_pem(&chain, &key))
            {
                Ok(()) => {}
                Err(error) => {
                    tracing::error!(dir = %dir.display(), %error, "cannot load the webhook certificate; keeping the last one")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        },
        CertificateSource::Managed {
            namespace,
            secret,
            hosts,
            configuration,
            renew_every,
        } => {
            let validity = renew_every * VALIDITY_PERIODS;
            let ca = load_or_create_ca(&client, &namespace, &secret).await?;
            let issued = std::time::Instant::now();
            let (chain, key) = ca.issue(&hosts, validity)?;
            serving.set_pem(&chain, &key)?;
            tracing::info!(?hosts, "webhook serving certificate issued");
            let mut last_issue = issued;
            loop {
                let leading = *leader.borrow();
                if leading
                    && let Err(error) = sync_ca_bundle(&client, &configuration, &ca.cert_pem).await
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
                            tracing::info!("webhook serving certificate renewed");
                            last_issue = std::time::Instant::now();
                        }
                        Err(error) => {
                            tracing::error!(%error, "cannot renew the webhook certificate")
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

/// The webhook CA: certificate and key, PEM.
pub struct WebhookCa {
    pub cert_pem: String,
    key_pem: String,
}

impl WebhookCa {
    fn generate() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "lattice-xds webhook CA");
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
        let ca_key = KeyPair::from_pem(&self.key_pem).context("the webhook CA key is not PEM")?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .context("the webhook CA certificate is not usable")?;
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
            .context("a webhook host is not a valid DNS name")?;
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
) -> anyhow::Result<WebhookCa> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    loop {
        if let Some(secret) = api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the webhook CA Secret {namespace}/{name}"))?
        {
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .and_then(|value| String::from_utf8(value.0.clone()).ok())
                    .with_context(|| format!("Secret {namespace}/{name} has no {key}"))
            };
            return Ok(WebhookCa {
                cert_pem: field(CA_CERT_KEY)?,
                key_pem: field(CA_KEY_KEY)?,
            });
        }
        let ca = WebhookCa::generate()?;
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
                tracing::info!(namespace, name, "webhook CA created");
                return Ok(ca);
            }
            // Another replica created it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot create the webhook CA Secret {namespace}/{name}")
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
