//! The services a pod can call through VPC Lattice, as the VPC Lattice API lists them: the
//! service networks associated with the cluster's VPC (or named on the command line), their
//! service associations (services shared in from other accounts included), and each service's
//! names, listeners and auth settings.
//!
//! The API is polled. Every poll lists the networks and their service associations, which
//! decide which services exist; a service is described (`GetService`, `ListListeners`,
//! `GetAuthPolicy`) when it first appears and again every [`DESCRIBE_EVERY`] polls, at most
//! [`DESCRIBE_PER_POLL`] at a time once known. A poll that fails keeps the last good set
//! (fail static): nothing discovered is dropped until the API says it is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_vpclattice::Client;
use aws_sdk_vpclattice::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_vpclattice::types::{AuthPolicyState, ListenerProtocol};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lattice::checked_host;
use crate::metrics::{Metrics, OperationLabel, ReasonLabel, ResultLabel};
use crate::model::{
    AuthSetting, Destination, NetworkOrigin, Protocol, ServiceOrigin, Settings, Trust,
};

/// Where and how often to look.
#[derive(Clone, Debug, Default)]
pub struct DiscoverySettings {
    /// The cluster's VPC: every service network associated with it is read.
    pub vpc_id: Option<String>,
    /// Service networks read besides the VPC's, by name, id or ARN.
    pub service_networks: Vec<String>,
    pub interval: Duration,
    /// The VPC Lattice API's region; by default the SDK's (AWS_REGION, the profile).
    pub region: Option<String>,
    /// A different VPC Lattice endpoint (tests, VPC endpoints); the SDK also reads
    /// `AWS_ENDPOINT_URL` itself.
    pub endpoint_url: Option<String>,
}

impl DiscoverySettings {
    pub fn enabled(&self) -> bool {
        self.vpc_id.is_some() || !self.service_networks.is_empty()
    }
}

/// A service is described again after this many polls (its listeners or auth may change).
pub const DESCRIBE_EVERY: u64 = 10;
/// Known services described again in one poll, at most; new services are always described.
pub const DESCRIBE_PER_POLL: usize = 200;
/// Descriptions in flight at once.
const CONCURRENT_CALLS: usize = 8;
/// The first wait after a failed poll; it doubles up to the larger of the interval and this
/// ceiling.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// One request.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener of a discovered service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub protocol: Protocol,
    /// Whether VPC Lattice terminates TLS on it (HTTPS; a TLS passthrough listener does not).
    pub tls: bool,
    pub port: u16,
}

/// One service of the service networks, as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub origin: Arc<ServiceOrigin>,
    pub custom_domain: Option<String>,
    /// The Lattice-assigned DNS name (`dnsEntry.domainName`).
    pub assigned_name: Option<String>,
    /// Empty when they could not be read (`origin.listeners_read` is false).
    pub listeners: Vec<Listener>,
}

impl Service {
    /// The listener the sidecar uses: HTTPS before HTTP before TLS passthrough, then the
    /// scheme's default port, then the lowest. `None` for a service without listeners, which
    /// VPC Lattice does not serve; HTTPS on 443 while the listeners are unread.
    fn listener(&self) -> Option<Listener> {
        if !self.origin.listeners_read {
            return Some(Listener {
                protocol: Protocol::Http,
                tls: true,
                port: 443,
            });
        }
        self.listeners.iter().copied().max_by_key(|listener| {
            let rank = match (listener.protocol, listener.tls) {
                (Protocol::TlsPassthrough, _) => 0,
                (_, false) => 1,
                (_, true) => 2,
            };
            let default_port = matches!(
                (listener.protocol, listener.tls, listener.port),
                (Protocol::Http, true, 443) | (Protocol::Http, false, 80)
            );
            (rank, default_port, std::cmp::Reverse(listener.port))
        })
    }

    /// The host names the service answers to: its custom domain, then its assigned name.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for name in [&self.custom_domain, &self.assigned_name]
            .into_iter()
            .flatten()
        {
            if let Ok(host) = checked_host(name)
                && !names.contains(&host)
            {
                names.push(host);
            }
        }
        names
    }

    /// A destination per name. A custom domain's certificate chains to the private CAs (or the
    /// system roots when none is configured); an assigned name's to the system roots.
    pub fn destinations(&self, settings: &Settings) -> Vec<Destination> {
        let Some(listener) = self.listener() else {
            return Vec::new();
        };
        let custom = self.custom_domain.as_deref().map(str::to_ascii_lowercase);
        self.names()
            .into_iter()
            .map(|host| {
                let trust = match custom.as_deref() == Some(host.as_str()) {
                    true => settings.custom_domain_trust(),
                    false => Trust::SystemRoots,
                };
                Destination {
                    pinned: settings.pinned.get(&host).cloned().unwrap_or_default(),
                    tls: listener.tls.then_some(trust),
                    host,
                    port: listener.port,
                    protocol: listener.protocol,
                    route: None,
                    service: Some(Arc::clone(&self.origin)),
                    calls: settings.calls,
                }
            })
            .collect()
    }
}

/// What discovery knows, published after every poll that changed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryState {
    /// The first poll has ended, well or not (always true when discovery is off): the first
    /// snapshot waits for it so that it never lacks a service merely slow to be listed.
    pub settled: bool,
    /// The services of the last successful poll, by ARN.
    pub services: Arc<Vec<Service>>,
}

/// Polls the VPC Lattice API until `shutdown`, publishing each change through `state`.
pub async fn run(
    settings: DiscoverySettings,
    state: watch::Sender<DiscoveryState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    if !settings.enabled() {
        state.send_modify(|state| state.settled = true);
        shutdown.cancelled().await;
        return;
    }
    let client = client(&settings).await;
    let mut catalog = Catalog::default();
    let mut failures: u32 = 0;
    let poller = Poller {
        client: &client,
        metrics: &metrics,
    };
    loop {
        let started = std::time::Instant::now();
        let polled = poller.poll(&settings, &mut catalog).await;
        metrics
            .discovery_poll_seconds
            .set(started.elapsed().as_secs_f64());
        let wait = match polled {
            Ok(services) => {
                if failures > 0 {
                    tracing::info!(failed_polls = failures, "VPC Lattice API answering again");
                }
                failures = 0;
                metrics
                    .discovery_polls
                    .get_or_create(&ResultLabel::new("ok"))
                    .inc();
                metrics
                    .discovered_services
                    .set(i64::try_from(services.len()).unwrap_or(i64::MAX));
                metrics.discovery_last_success.set(unix_now());
                state.send_if_modified(|state| {
                    let changed = !state.settled || *state.services != services;
                    if changed {
                        tracing::info!(
                            services = services.len(),
                            "VPC Lattice services discovered"
                        );
                        state.services = Arc::new(services);
                    }
                    state.settled = true;
                    changed
                });
                jittered(settings.interval)
            }
            Err(failure) => {
                metrics
                    .discovery_polls
                    .get_or_create(&ResultLabel::new("failed"))
                    .inc();
                metrics
                    .discovery_failures
                    .get_or_create(&ReasonLabel {
                        reason: failure.reason.to_string(),
                    })
                    .inc();
                let wait = backoff(failures, settings.interval);
                // Once per outage; the metric counts every failed poll.
                if failures == 0 {
                    tracing::warn!(
                        error = %failure.message,
                        reason = failure.reason,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "cannot poll the VPC Lattice API; the services discovered before stay served"
                    );
                }
                failures = failures.saturating_add(1);
                // The services found before stay; only the first poll's end is news.
                state.send_if_modified(|state| !std::mem::replace(&mut state.settled, true));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One attempt per request: a failed request fails the poll, and the poll loop alone backs
/// off, so that a throttled API sees fewer requests rather than retries on top of polls.
async fn client(settings: &DiscoverySettings) -> Client {
    let config = crate::aws::sdk_config(
        settings.region.as_deref(),
        settings.endpoint_url.as_deref(),
        1,
        ATTEMPT_TIMEOUT,
    )
    .await;
    Client::new(&config)
}

/// `interval` give or take a tenth, so that replicas and restarts do not poll in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// The wait after `failures` earlier failed polls in a row: 1 s, doubling, up to the larger of
/// the interval and five minutes.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let ceiling = interval.max(MAX_RETRY);
    let wait = FIRST_RETRY.saturating_mul(2u32.saturating_pow(failures.min(16)));
    jittered(wait.min(ceiling))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Why a poll failed.
#[derive(Debug)]
struct Failure {
    /// `throttled`, `unreachable`, `denied` or `error`.
    reason: &'static str,
    message: String,
}

impl Failure {
    fn from_sdk<E, R>(operation: &str, error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let reason = match error {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => "unreachable",
            _ => match error.code() {
                Some("ThrottlingException" | "TooManyRequestsException") => "throttled",
                Some("AccessDeniedException" | "UnauthorizedException") => "denied",
                _ => "error",
            },
        };
        Self {
            reason,
            message: format!("VPC Lattice {operation}: {}", crate::logging::causes(error)),
        }
    }
}

/// A service network, as listed.
#[derive(Clone, Debug)]
struct Network {
    id: String,
    name: String,
    arn: String,
}

/// What earlier polls learned: descriptions are kept between polls.
#[derive(Default)]
struct Catalog {
    polls: u64,
    services: HashMap<String, Described>,
    networks: HashMap<String, (u64, AuthSetting)>,
}

/// One service's description and the poll that made it.
#[derive(Clone)]
struct Described {
    at: u64,
    name: String,
    arn: String,
    custom_domain: Option<String>,
    assigned_name: Option<String>,
    auth: AuthSetting,
    listeners: Option<Vec<Listener>>,
}

struct Poller<'a> {
    client: &'a Client,
    metrics: &'a Metrics,
}

impl Poller<'_> {
    fn count(&self, operation: &str) {
        self.metrics
            .discovery_api_calls
            .get_or_create(&OperationLabel {
                operation: operation.to_string(),
            })
            .inc();
    }

    /// Counts one answer of `operation` (a request, or a page of a listing) and turns its
    /// error into the poll's failure.
    fn answered<T, E, R>(
        &self,
        operation: &str,
        answer: Result<T, SdkError<E, R>>,
    ) -> Result<T, Failure>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.count(operation);
        answer.map_err(|error| Failure::from_sdk(operation, &error))
    }

    /// One poll: the networks, their services, and the descriptions that are due.
    async fn poll(
        &self,
        settings: &DiscoverySettings,
        catalog: &mut Catalog,
    ) -> Result<Vec<Service>, Failure> {
        catalog.polls += 1;
        let networks = self.networks(settings).await?;
        // Which networks each service is reached through.
        let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for network in &networks {
            for service in self.associations(&network.id).await? {
                members
                    .entry(service)
                    .or_default()
                    .insert(network.id.clone());
            }
        }
        let mut network_origins = BTreeMap::new();
        for network in &networks {
            let auth = self.network_auth(network, catalog).await?;
            network_origins.insert(
                network.id.clone(),
                NetworkOrigin {
                    name: network.name.clone(),
                    arn: network.arn.clone(),
                    auth,
                },
            );
        }

        let polls = catalog.polls;
        let (new, known): (Vec<&String>, Vec<&String>) = members
            .keys()
            .filter(|id| {
                catalog
                    .services
                    .get(*id)
                    .is_none_or(|described| polls - described.at >= DESCRIBE_EVERY)
            })
            .partition(|id| !catalog.services.contains_key(*id));
        let due: Vec<String> = (new.into_iter())
            .chain(known.into_iter().take(DESCRIBE_PER_POLL))
            .cloned()
            .collect();
        let descriptions: Vec<(String, Result<Described, Failure>)> = futures::stream::iter(due)
            .map(|id: String| async move {
                let description = self.describe(&id, polls).await;
                (id, description)
            })
            .buffer_unordered(CONCURRENT_CALLS)
            .collect()
            .await;
        for (id, description) in descriptions {
            match description {
                Ok(described) => {
                    catalog.services.insert(id, described);
                }
                // A throttled or unreachable API fails the poll; a service that alone cannot be
                // read keeps its last description, or waits for the next poll.
                Err(failure) if failure.reason != "error" && failure.reason != "denied" => {
                    return Err(failure);
                }
                Err(failure) => {
                    tracing::warn!(service = %id, error = %failure.message, "cannot describe a VPC Lattice service; it is served as described before, if at all");
                }
            }
        }
        catalog.services.retain(|id, _| members.contains_key(id));

        let mut services: Vec<Service> = members
            .iter()
            .filter_map(|(id, networks)| {
                let described = catalog.services.get(id)?;
                Some(Service {
                    id: id.clone(),
                    origin: Arc::new(ServiceOrigin {
                        name: described.name.clone(),
                        arn: described.arn.clone(),
                        account: account_of(&described.arn),
                        auth: described.auth.clone(),
                        networks: networks
                            .iter()
                            .filter_map(|network| network_origins.get(network).cloned())
                            .collect(),
                        listeners_read: described.listeners.is_some(),
                    }),
                    custom_domain: described.custom_domain.clone(),
                    assigned_name: described.assigned_name.clone(),
                    listeners: described.listeners.clone().unwrap_or_default(),
                })
            })
            .collect();
        services.sort_by(|a, b| a.origin.arn.cmp(&b.origin.arn));
        Ok(services)
    }

    /// The service networks to read: the VPC's associations, then the named ones.
    async fn networks(&self, settings: &DiscoverySettings) -> Result<Vec<Network>, Failure> {
        let mut networks: BTreeMap<String, Network> = BTreeMap::new();
        if let Some(vpc) = &settings.vpc_id {
            let operation = "ListServiceNetworkVpcAssociations";
            let mut pages = self
                .client
                .list_service_network_vpc_associations()
                .vpc_identifier(vpc)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = self.answered(operation, page)?;
                for association in page.items() {
                    let active = active(association.status().map(|status| status.as_str()));
                    if let (true, Some(id)) = (active, association.service_network_id()) {
                        networks.insert(
                            id.to_string(),
                            Network {
                                id: id.to_string(),
                                name: association.service_network_name().unwrap_or(id).to_string(),
                                arn: association
                                    .service_network_arn()
                                    .unwrap_or_default()
                                    .to_string(),
                            },
                        );
                    }
                }
            }
        }
        for identifier in &settings.service_networks {
            let network = self.network(identifier).await?;
            networks.insert(network.id.clone(), network);
        }
        Ok(networks.into_values().collect())
    }

    /// A service network named by id, ARN or name.
    async fn network(&self, identifier: &str) -> Result<Network, Failure> {
        if identifier.starts_with("sn-") || identifier.starts_with("arn:") {
            let request = self.client.get_service_network();
            let network = request.service_network_identifier(identifier).send().await;
            let network = self.answered("GetServiceNetwork", network)?;
            let id = network.id().unwrap_or(identifier).to_string();
            return Ok(Network {
                name: network.name().unwrap_or(&id).to_string(),
                arn: network.arn().unwrap_or_default().to_string(),
                id,
            });
        }
        let operation = "ListServiceNetworks";
        let mut pages = self.client.list_service_networks().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = self.answered(operation, page)?;
            if let Some(network) = page.items().iter().find(|n| n.name() == Some(identifier)) {
                let id = network.id().unwrap_or_default().to_string();
                return Ok(Network {
                    name: identifier.to_string(),
                    arn: network.arn().unwrap_or_default().to_string(),
                    id,
                });
            }
        }
        Err(Failure {
            reason: "error",
            message: format!("no service network named {identifier:?} is visible to this account"),
        })
    }

    /// The ids of the active services associated with a network.
    async fn associations(&self, network: &str) -> Result<Vec<String>, Failure> {
        let operation = "ListServiceNetworkServiceAssociations";
        let mut services = Vec::new();
        let mut pages = self
            .client
            .list_service_network_service_associations()
            .service_network_identifier(network)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = self.answered(operation, page)?;
            for association in page.items() {
                let active = active(association.status().map(|status| status.as_str()));
                if let (true, Some(id)) = (active, association.service_id()) {
                    services.push(id.to_string());
                }
            }
        }
        Ok(services)
    }

    /// A network's auth type and policy, read again every [`DESCRIBE_EVERY`] polls.
    async fn network_auth(
        &self,
        network: &Network,
        catalog: &mut Catalog,
    ) -> Result<AuthSetting, Failure> {
        if let Some((at, auth)) = catalog.networks.get(&network.id)
            && catalog.polls - at < DESCRIBE_EVERY
        {
            return Ok(auth.clone());
        }
        let request = self.client.get_service_network();
        let described = request.service_network_identifier(&network.id).send().await;
        let described = self.answered("GetServiceNetwork", described)?;
        let auth_type = described
            .auth_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let policy = self.auth_policy(&network.arn, &auth_type).await?;
        let auth = AuthSetting { auth_type, policy };
        catalog
            .networks
            .insert(network.id.clone(), (catalog.polls, auth.clone()));
        Ok(auth)
    }

    /// Whether an active auth policy is attached (only asked when the auth type is AWS_IAM).
    async fn auth_policy(&self, arn: &str, auth_type: &str) -> Result<bool, Failure> {
        if auth_type != "AWS_IAM" || arn.is_empty() {
            return Ok(false);
        }
        let operation = "GetAuthPolicy";
        self.count(operation);
        match self
            .client
            .get_auth_policy()
            .resource_identifier(arn)
            .send()
            .await
        {
            Ok(answer) => Ok(answer.policy().is_some_and(|policy| !policy.is_empty())
                && answer
                    .state()
                    .is_none_or(|state| *state == AuthPolicyState::Active)),
            Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(error) => Err(Failure::from_sdk(operation, &error)),
        }
    }

    /// `GetService`, `ListListeners` and `GetAuthPolicy` of one service.
    async fn describe(&self, id: &str, polls: u64) -> Result<Described, Failure> {
        let service = self
            .client
            .get_service()
            .service_identifier(id)
            .send()
            .await;
        let service = self.answered("GetService", service)?;
        let arn = service.arn().unwrap_or_default().to_string();
        let auth_type = service
            .auth_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let policy = self.auth_policy(&arn, &auth_type).await?;
        let listeners = match self.listeners(id).await {
            Ok(listeners) => Some(listeners),
            Err(failure) if failure.reason == "denied" => {
                // A service shared from another account may not show its listeners.
                tracing::info!(service = %arn, error = %failure.message, "listeners not readable; HTTPS on 443 assumed");
                None
            }
            Err(failure) => return Err(failure),
        };
        Ok(Described {
            at: polls,
            name: service.name().unwrap_or(id).to_string(),
            custom_domain: service
                .custom_domain_name()
                .filter(|name| !name.is_empty())
                .map(str::to_string),
            assigned_name: service
                .dns_entry()
                .and_then(|entry| entry.domain_name())
                .filter(|name| !name.is_empty())
                .map(str::to_string),
            auth: AuthSetting { auth_type, policy },
            listeners,
            arn,
        })
    }

    async fn listeners(&self, service: &str) -> Result<Vec<Listener>, Failure> {
        let operation = "ListListeners";
        let mut listeners = Vec::new();
        let mut pages = self
            .client
            .list_listeners()
            .service_identifier(service)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = self.answered(operation, page)?;
            for listener in page.items() {
                let (protocol, tls) = match listener.protocol() {
                    Some(ListenerProtocol::Http) => (Protocol::Http, false),
                    Some(ListenerProtocol::Https) => (Protocol::Http, true),
                    Some(ListenerProtocol::TlsPassthrough) => (Protocol::TlsPassthrough, false),
                    _ => continue,
                };
                let Some(port) = listener.port().and_then(|port| u16::try_from(port).ok()) else {
                    continue;
                };
                listeners.push(Listener {
                    protocol,
                    tls,
                    port,
                });
            }
        }
        listeners.sort();
        Ok(listeners)
    }
}

/// Whether an association is in force: `ACTIVE`, or no status given. One being created, being
/// deleted or that failed carries no traffic.
fn active(status: Option<&str>) -> bool {
    status.is_none_or(|status| status == "ACTIVE")
}

/// The account of an ARN (`arn:aws:vpc-lattice:<region>:<account>:service/<id>`).
fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(listeners: Option<Vec<Listener>>) -> Service {
        Service {
            id: "svc-0123".into(),
            origin: Arc::new(ServiceOrigin {
                name: "billing-prod".into(),
                arn: "arn:aws:vpc-lattice:us-east-1:222233334444:service/svc-0123".into(),
                account: "222233334444".into(),
                auth: AuthSetting::default(),
                networks: Vec::new(),
                listeners_read: listeners.is_some(),
            }),
            custom_domain: Some("Billing.Example.com".into()),
            assigned_name: Some(
                "billing-prod-0123.7d67968.vpc-lattice-svcs.us-east-1.on.aws".into(),
            ),
            listeners: listeners.unwrap_or_default(),
        }
    }

    const fn listener(protocol: Protocol, tls: bool, port: u16) -> Listener {
        Listener {
            protocol,
            tls,
            port,
        }
    }

    #[test]
    fn a_service_is_reached_on_its_best_listener_under_each_of_its_names() {
        let settings = Settings::default();
        let listeners = vec![
            listener(Protocol::Http, false, 80),
            listener(Protocol::Http, true, 8443),
            listener(Protocol::Http, true, 443),
            listener(Protocol::TlsPassthrough, false, 9443),
        ];
        let destinations = service(Some(listeners)).destinations(&settings);
        let hosts: Vec<(&str, u16, Option<&Trust>)> = destinations
            .iter()
            .map(|d| (d.host.as_str(), d.port, d.tls.as_ref()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("billing.example.com", 443, Some(&Trust::SystemRoots)),
                (
                    "billing-prod-0123.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
                    443,
                    Some(&Trust::SystemRoots)
                ),
            ]
        );
        assert!(
            destinations
                .iter()
                .all(|d| d.service.is_some() && d.route.is_none())
        );

        // Only a TLS passthrough listener: forwarded untouched, no TLS of the sidecar's own.
        let passthrough = service(Some(vec![listener(Protocol::TlsPassthrough, false, 9443)]));
        let destination = &passthrough.destinations(&settings)[0];
        assert_eq!(
            (
                destination.protocol,
                destination.port,
                destination.tls.is_none()
            ),
            (Protocol::TlsPassthrough, 9443, true)
        );
        // Unread listeners: HTTPS on 443. No listener at all: not served.
        let unread = service(None).destinations(&settings);
        assert_eq!((unread[0].port, unread[0].tls.is_some()), (443, true));
        assert!(service(Some(Vec::new())).destinations(&settings).is_empty());
    }

    #[test]
    fn failed_polls_back_off_from_a_second_to_the_ceiling() {
        let interval = Duration::from_secs(30);
        let first = backoff(0, interval);
        assert!(first >= Duration::from_millis(900) && first <= Duration::from_millis(1100));
        let fourth = backoff(3, interval);
        assert!(fourth >= Duration::from_millis(7200) && fourth <= Duration::from_millis(8800));
        assert!(backoff(40, interval) <= MAX_RETRY.mul_f64(1.1));
        assert_eq!(
            account_of("arn:aws:vpc-lattice:us-east-1:222233334444:service/svc-1"),
            "222233334444"
        );
    }
}
