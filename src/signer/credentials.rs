//! The pod's AWS credentials: loaded through the SDK's default chain, kept in memory, refreshed
//! ahead of their expiry, and refused once they cannot be trusted.
//!
//! The chain is the one every AWS SDK uses: environment variables, the shared config files, web
//! identity (IRSA), container credentials (EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! with the token re-read from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` on every load) and the
//! instance metadata service. Requests never wait for it: they read the last good credentials,
//! and a background task replaces them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Credentials are refreshed this long before they expire, at most.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Credentials within this long of their expiry are no longer used to sign.
const EXPIRY_SKEW: Duration = Duration::from_secs(1);
/// Credentials without an expiry (static keys) are still re-read this often.
const REREAD_STATIC: Duration = Duration::from_secs(5 * 60);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// Why there are no credentials to sign with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The first load has not finished yet.
    #[error("no AWS credentials: still loading")]
    Loading,
    /// The chain failed, and no earlier credentials are still valid.
    #[error("no AWS credentials: {0}")]
    Failed(String),
    /// The last credentials expired and have not been replaced (yet).
    #[error("no AWS credentials: the last ones expired and no new ones were loaded: {0}")]
    Expired(String),
}

impl Unavailable {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Loading => "credentials_loading",
            Self::Failed(_) => "no_credentials",
            Self::Expired(_) => "credentials_expired",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    current: Option<Arc<Credentials>>,
    last_error: Option<String>,
}

/// The credentials to sign with right now. Cheap to clone and to read.
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    state: Arc<RwLock<State>>,
    /// Woken after every load, good or failed.
    attempted: Arc<Notify>,
}

impl CredentialStore {
    /// The current credentials, unless they are missing or about to expire.
    pub fn get(&self) -> Result<Arc<Credentials>, Unavailable> {
        let state = self
            .state
            .read()
            .map_err(|_| Unavailable::Failed("credential store poisoned".to_string()))?;
        let cause = || {
            state
                .last_error
                .clone()
                .unwrap_or_else(|| "a refresh is under way".to_string())
        };
        match &state.current {
            Some(credentials) if usable(credentials, SystemTime::now()) => Ok(credentials.clone()),
            Some(_) => Err(Unavailable::Expired(cause())),
            None if state.last_error.is_some() => Err(Unavailable::Failed(cause())),
            None => Err(Unavailable::Loading),
        }
    }

    /// Returns once the first load has ended, with credentials or with an error.
    pub async fn first_load(&self) {
        loop {
            // Created before the check, so a load that ends in between still wakes it.
            let attempted = self.attempted.notified();
            if !matches!(self.get(), Err(Unavailable::Loading)) {
                return;
            }
            attempted.await;
        }
    }

    /// Fixed credentials, for tests and benchmarks.
    pub fn fixed(credentials: Credentials) -> Self {
        let store = Self::default();
        store.store(credentials);
        store
    }

    fn store(&self, credentials: Credentials) {
        if let Ok(mut state) = self.state.write() {
            state.current = Some(Arc::new(credentials));
            state.last_error = None;
        }
        self.attempted.notify_waiters();
    }

    /// Records why credentials could not be loaded; valid earlier ones are still used.
    pub fn fail(&self, error: String) {
        if let Ok(mut state) = self.state.write() {
            state.last_error = Some(error);
        }
        self.attempted.notify_waiters();
    }
}

fn usable(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| expiry > now + EXPIRY_SKEW)
}

/// When to load again after a success: ahead of the expiry by at most [`REFRESH_AHEAD`] and at
/// most half the remaining lifetime, so short-lived credentials are replaced in time too.
fn next_refresh(credentials: &Credentials, now: SystemTime) -> Duration {
    match credentials.expiry() {
        None => REREAD_STATIC,
        Some(expiry) => {
            let remaining = expiry.duration_since(now).unwrap_or_default();
            remaining.saturating_sub(REFRESH_AHEAD.min(remaining / 2))
        }
    }
}

/// Loads credentials from the SDK's default chain until `shutdown`, keeping `store` current.
pub async fn refresh(
    provider: SharedCredentialsProvider,
    store: CredentialStore,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut retry = RETRY_FIRST;
    loop {
        let wait = match provider.provide_credentials().await {
            Ok(credentials) => {
                let now = SystemTime::now();
                let wait = next_refresh(&credentials, now);
                metrics.credentials_loaded(credentials.expiry());
                // The access key id stays out of logs, like the secret: it names the identity.
                tracing::info!(
                    expires_in_s = credentials
                        .expiry()
                        .and_then(|expiry| expiry.duration_since(now).ok())
                        .map(|left| left.as_secs()),
                    next_refresh_s = wait.as_secs(),
                    "loaded AWS credentials"
                );
                store.store(credentials);
                retry = RETRY_FIRST;
                wait
            }
            Err(error) => {
                let cause = crate::logging::causes(&error);
                tracing::warn!(error = %cause, retry_in_ms = retry.as_millis() as u64, "could not load AWS credentials");
                metrics.credentials_failed();
                store.fail(cause);
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_in(seconds: u64, now: SystemTime) -> Credentials {
        Credentials::new(
            "AKID",
            "SECRET",
            None,
            Some(now + Duration::from_secs(seconds)),
            "test",
        )
    }

    #[test]
    fn refreshes_five_minutes_ahead_or_at_half_life() {
        let now = SystemTime::now();
        assert_eq!(
            next_refresh(&expiring_in(3600, now), now),
            Duration::from_secs(3300)
        );
        assert_eq!(
            next_refresh(&expiring_in(120, now), now),
            Duration::from_secs(60)
        );
        assert_eq!(next_refresh(&expiring_in(0, now), now), Duration::ZERO);
        let fixed = Credentials::new("AKID", "SECRET", None, None, "test");
        assert_eq!(next_refresh(&fixed, now), REREAD_STATIC);
    }

    #[test]
    fn refuses_expired_credentials_with_the_last_cause() {
        let store = CredentialStore::default();
        assert_eq!(store.get().unwrap_err(), Unavailable::Loading);
        store.fail("connection refused".to_string());
        assert_eq!(
            store.get().unwrap_err(),
            Unavailable::Failed("connection refused".to_string())
        );
        store.store(expiring_in(0, SystemTime::now()));
        store.fail("agent answered 500".to_string());
        let error = store.get().unwrap_err();
        assert_eq!(
            error,
            Unavailable::Expired("agent answered 500".to_string())
        );
        assert!(error.to_string().starts_with("no AWS credentials: "));
    }

    #[test]
    fn valid_credentials_survive_a_failed_refresh() {
        let store = CredentialStore::default();
        store.store(expiring_in(600, SystemTime::now()));
        store.fail("agent answered 500".to_string());
        assert_eq!(store.get().unwrap().access_key_id(), "AKID");
    }
}
