//! Fetching each CA's certificate from ACM PCA (`GetCertificateAuthorityCertificate`) with the
//! controller's own credentials, every refresh period, with backoff after a failure. The last
//! good certificate of each CA stays served whatever happens to later fetches.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::validate::{CertificateInfo, ValidCa, validate};
use crate::metrics::{CaLabel, Metrics};

/// The first retry after a failed fetch; it doubles up to the refresh period.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long one `GetCertificateAuthorityCertificate` attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// An ACM PCA certificate authority ARN:
/// `arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaArn {
    pub arn: String,
    pub region: String,
    pub id: String,
}

/// An ARN that does not name an ACM PCA certificate authority.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not an ACM PCA certificate authority ARN \
     (arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID)"
)]
pub struct CaArnParseError(String);

impl FromStr for CaArn {
    type Err = CaArnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || CaArnParseError(s.to_string());
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(invalid());
        };
        let id = resource
            .strip_prefix("certificate-authority/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(invalid)?;
        let well_formed = prefix == "arn"
            && !partition.is_empty()
            && service == "acm-pca"
            && !region.is_empty()
            && !account.is_empty();
        if !well_formed {
            return Err(invalid());
        }
        Ok(Self {
            arn: s.to_string(),
            region: region.to_string(),
            id: id.to_string(),
        })
    }
}

/// Where and how often to fetch.
#[derive(Clone, Debug)]
pub struct TrustSettings {
    pub cas: Vec<CaArn>,
    pub refresh: Duration,
    /// A different ACM PCA endpoint (tests, VPC endpoints); the SDK also reads
    /// `AWS_ENDPOINT_URL` itself.
    pub endpoint_url: Option<String>,
}

/// The outcome of the last fetch of one CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchRecord {
    /// Unix seconds.
    pub at: i64,
    /// `None` when the fetch succeeded and the certificate was valid.
    pub error: Option<String>,
}

/// Everything known about one CA. Only public certificate material is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaStatus {
    pub arn: String,
    /// The certificate served now: the last one that passed validation.
    pub certificate: Option<CertificateInfo>,
    pub chain: Vec<CertificateInfo>,
    pub last_fetch: Option<FetchRecord>,
    /// Unix seconds of the last successful fetch.
    pub last_success: Option<i64>,
    /// The PEM served (the certificate then its chain).
    #[serde(skip)]
    pub pem: Option<String>,
}

/// Every configured CA, in flag order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrustState {
    pub cas: Vec<CaStatus>,
}

impl TrustState {
    pub fn new(settings: &TrustSettings) -> Self {
        Self {
            cas: settings
                .cas
                .iter()
                .map(|ca| CaStatus {
                    arn: ca.arn.clone(),
                    certificate: None,
                    chain: Vec::new(),
                    last_fetch: None,
                    last_success: None,
                    pem: None,
                })
                .collect(),
        }
    }

    /// Every CA has been fetched at least once, successfully or not: the first snapshot waits
    /// for this so that it never lacks a CA that was merely slow to arrive.
    pub fn settled(&self) -> bool {
        self.cas.iter().all(|ca| ca.last_fetch.is_some())
    }
}

/// Fetches every CA until `shutdown`, publishing each change through `state`.
pub async fn run(
    settings: TrustSettings,
    state: watch::Sender<TrustState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, ca) in settings.cas.iter().cloned().enumerate() {
        let client = client(&ca.region, settings.endpoint_url.as_deref()).await;
        tasks.spawn(follow(
            index,
            ca,
            client,
            settings.refresh,
            state.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    // With no CA (or after every fetcher stopped), the last state stays published.
    shutdown.cancelled().await;
}

/// Three attempts of [`ATTEMPT_TIMEOUT`], the SDK's standard retries.
async fn client(region: &str, endpoint_url: Option<&str>) -> aws_sdk_acmpca::Client {
    let config = crate::aws::sdk_config(Some(region), endpoint_url, 3, ATTEMPT_TIMEOUT).await;
    aws_sdk_acmpca::Client::new(&config)
}

async fn follow(
    index: usize,
    ca: CaArn,
    client: aws_sdk_acmpca::Client,
    refresh: Duration,
    state: watch::Sender<TrustState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let label = CaLabel { ca: ca.arn.clone() };
    let mut retry = FIRST_RETRY;
    loop {
        let result = fetch(&client, &ca.arn).await;
        let now = unix(SystemTime::now());
        let wait = match result {
            Ok(valid) => {
                tracing::info!(
                    ca = %ca.arn,
                    subject = %valid.certificate.subject,
                    serial = %valid.certificate.serial,
                    not_after = valid.certificate.not_after,
                    "fetched CA certificate"
                );
                metrics.trust_last_success.get_or_create(&label).set(now);
                metrics
                    .trust_not_after
                    .get_or_create(&label)
                    .set(valid.certificate.not_after);
                metrics.trust_fetch_ok.get_or_create(&label).set(1);
                state.send_if_modified(|state| {
                    let status = &mut state.cas[index];
                    let changed = status.pem.as_deref() != Some(valid.pem.as_str())
                        || status
                            .last_fetch
                            .as_ref()
                            .is_none_or(|last| last.error.is_some());
                    status.certificate = Some(valid.certificate);
                    status.chain = valid.chain;
                    status.pem = Some(valid.pem);
                    status.last_success = Some(now);
                    status.last_fetch = Some(FetchRecord {
                        at: now,
                        error: None,
                    });
                    changed
                });
                retry = FIRST_RETRY;
                refresh
            }
            Err(error) => {
                tracing::warn!(
                    ca = %ca.arn,
                    %error,
                    retry_in_s = retry.as_secs(),
                    "could not refresh CA certificate; the last good one stays served"
                );
                metrics.trust_fetch_failures.get_or_create(&label).inc();
                metrics.trust_fetch_ok.get_or_create(&label).set(0);
                state.send_modify(|state| {
                    state.cas[index].last_fetch = Some(FetchRecord {
                        at: now,
                        error: Some(error),
                    });
                });
                let wait = retry;
                retry = (retry * 2).min(refresh.max(FIRST_RETRY));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One `GetCertificateAuthorityCertificate`, validated.
async fn fetch(client: &aws_sdk_acmpca::Client, arn: &str) -> Result<ValidCa, String> {
    let answer = client
        .get_certificate_authority_certificate()
        .certificate_authority_arn(arn)
        .send()
        .await
        .map_err(|error| format!("ACM PCA: {}", crate::logging::causes(&error)))?;
    let certificate = answer
        .certificate()
        .ok_or_else(|| "ACM PCA answered without a certificate".to_string())?;
    validate(certificate, answer.certificate_chain(), SystemTime::now())
        .map_err(|error| format!("refused the fetched certificate: {error}"))
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ca_arns_and_takes_the_region_from_them() {
        let arn: CaArn =
            "arn:aws:acm-pca:ap-northeast-2:111122223333:certificate-authority/abc-123"
                .parse()
                .unwrap();
        assert_eq!(arn.region, "ap-northeast-2");
        assert_eq!(arn.id, "abc-123");
        for bad in [
            "",
            "arn:aws:acm:us-east-1:1:certificate/abc",
            "arn:aws:acm-pca::1:certificate-authority/abc",
            "arn:aws:acm-pca:us-east-1:1:certificate-authority/",
            "arn:aws:acm-pca:us-east-1:1:certificate-authority/abc/certificate/def",
        ] {
            let error = bad.parse::<CaArn>().unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("is not an ACM PCA certificate authority ARN"),
                "{bad}"
            );
        }
    }
}
