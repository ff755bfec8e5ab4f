//! Leader election on a `coordination.k8s.io` Lease, the way client-go does it: the holder
//! renews the Lease every third of its duration; another replica takes it over only after it
//! has seen the same record unchanged for a whole duration, measured on its own clock (so
//! clock skew between nodes does not matter). Writes go through optimistic concurrency: of two
//! replicas racing for the Lease, the API server lets one win.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::LeaseConfig;
use crate::metrics::Metrics;

/// What this replica last saw of the Lease.
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    identity: String,
    observed: Option<Observed>,
    /// When this replica last renewed the Lease successfully.
    renewed: Option<Instant>,
}

/// Runs the election until `shutdown`; `leader` is true while this replica holds the Lease.
/// A leader that cannot renew before its Lease would expire steps down.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    identity: String,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut elector = Elector {
        api: Api::namespaced(client, &config.namespace),
        config,
        identity,
        observed: None,
        renewed: None,
    };
    let renew_every = elector.config.duration / 3;
    let retry_every = elector.config.duration / 5;
    loop {
        let holds = match elector.try_acquire_or_renew().await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::warn!(lease = %elector.config.name, %error, "cannot reach the leader Lease");
                elector
                    .renewed
                    .is_some_and(|at| at.elapsed() < elector.config.duration)
            }
        };
        if !holds {
            elector.renewed = None;
        }
        leader.send_if_modified(|was| {
            if *was == holds {
                return false;
            }
            if holds {
                tracing::info!(identity = %elector.identity, lease = %elector.config.name, "became the leader");
            } else {
                tracing::info!(identity = %elector.identity, lease = %elector.config.name, "no longer the leader");
            }
            *was = holds;
            true
        });
        metrics.leader.set(i64::from(holds));
        let wait = if holds { renew_every } else { retry_every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => {
                if holds {
                    elector.release().await;
                }
                return;
            }
        }
    }
}

impl Elector {
    /// Creates, renews or takes over the Lease; true when this replica holds it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff_now());
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder == self.identity {
            let mut renewed = lease;
            let acquired = spec.acquire_time.clone().unwrap_or_else(|| now.clone());
            renewed.spec = Some(self.spec(acquired, now, spec.lease_transitions.unwrap_or(0)));
            return self.write(
                self.api
                    .replace(&self.config.name, &PostParams::default(), &renewed)
                    .await,
            );
        }
        let version = lease.metadata.resource_version.clone();
        let unchanged_since = match &self.observed {
            Some(seen) if seen.resource_version == version => seen.since,
            _ => {
                self.observed = Some(Observed {
                    resource_version: version,
                    since: Instant::now(),
                });
                Instant::now()
            }
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(self.config.duration, Duration::from_secs);
        if !holder.is_empty() && unchanged_since.elapsed() < duration {
            return Ok(false);
        }
        tracing::info!(previous = holder, lease = %self.config.name, "taking over an expired Lease");
        let mut taken = lease;
        taken.spec = Some(self.spec(now.clone(), now, spec.lease_transitions.unwrap_or(0) + 1));
        self.write(
            self.api
                .replace(&self.config.name, &PostParams::default(), &taken)
                .await,
        )
    }

    /// A conflict means another replica wrote first: not an error, just not the leader.
    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
        match result {
            Ok(lease) => {
                self.observed = Some(Observed {
                    resource_version: lease.metadata.resource_version,
                    since: Instant::now(),
                });
                self.renewed = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// On a clean shutdown the leader empties the holder, so another replica takes over at
    /// once instead of after a whole Lease duration.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(error) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "could not release the leader Lease; another replica takes over when it expires");
        }
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// How soon a leader-only writer tries a failed write again when nothing else changes.
const RETRY: Duration = Duration::from_secs(5);

/// Waits for a leader-only writer's next round: its input changed, leadership changed, or a
/// failed write is due again. Returns whether this replica leads then; `None` once a channel
/// closes or on shutdown.
pub async fn next_round(
    input: impl Future<Output = bool>,
    leader: &mut watch::Receiver<bool>,
    retry_failed: bool,
    shutdown: &CancellationToken,
) -> Option<bool> {
    let retry = async {
        if retry_failed {
            tokio::time::sleep(RETRY).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let open = tokio::select! {
        open = input => open,
        changed = leader.changed() => changed.is_ok(),
        () = retry => true,
        () = shutdown.cancelled() => false,
    };
    open.then(|| *leader.borrow_and_update())
}
