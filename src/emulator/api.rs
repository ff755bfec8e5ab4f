//! The services the VPC Lattice API lists for a VPC, as the emulated data plane serves them:
//! read as the controller's discovery reads them (the same polls), plus the text of each auth
//! policy, which the data plane evaluates on every request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_vpclattice::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Service, Table};
use crate::metrics::Metrics;
use crate::model::{AuthSetting, Protocol};
use crate::policy::Policy;
use crate::provider::discovery::{self, DiscoverySettings, DiscoveryState};

/// The served services, following the API from its first poll on: `routes` (the manifests'
/// services) with the API's services over them, a name the API lists winning.
pub(super) async fn follow(
    settings: DiscoverySettings,
    routes: Table,
    backends: Arc<BTreeMap<String, String>>,
    shutdown: CancellationToken,
) -> anyhow::Result<watch::Receiver<Arc<Table>>> {
    let (publish, mut discovered) = watch::channel(DiscoveryState::default());
    tokio::spawn(discovery::run(
        settings.clone(),
        publish,
        Arc::new(Metrics::default()),
        shutdown,
    ));
    let config = crate::aws::sdk_config(
        settings.region.as_deref(),
        settings.endpoint_url.as_deref(),
        3,
        Duration::from_secs(10),
    )
    .await;
    let client = Client::new(&config);
    discovered.wait_for(|state| state.settled).await?;
    let state = discovered.borrow_and_update().clone();
    let first = table(&client, &state, &routes, &backends).await;
    let (sender, receiver) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        while discovered.changed().await.is_ok() {
            let state = discovered.borrow_and_update().clone();
            sender.send_replace(Arc::new(table(&client, &state, &routes, &backends).await));
        }
    });
    Ok(receiver)
}

/// Every name of every listed service, over the routes'.
async fn table(
    client: &Client,
    state: &DiscoveryState,
    routes: &Table,
    backends: &BTreeMap<String, String>,
) -> Table {
    let mut table = routes.clone();
    let mut policies = HashMap::new();
    for service in state.services.iter() {
        let origin = &service.origin;
        // The network the VPC reaches the service through; the first, when several.
        let network_policy = match origin.networks.first() {
            Some(network) => guard(client, &network.arn, &network.auth, &mut policies).await,
            None => None,
        };
        let service_policy = guard(client, &origin.arn, &origin.auth, &mut policies).await;
        let terminated = service.listeners.iter().any(|listener| listener.tls);
        let passthrough = !terminated
            && (service.listeners.iter())
                .any(|listener| listener.protocol == Protocol::TlsPassthrough);
        let entry = Arc::new(Service {
            source: format!("service {} ({})", origin.name, origin.arn),
            arn: origin.arn.clone(),
            backend: backends.get(&origin.name).cloned(),
            grpc: false,
            passthrough,
            network_policy,
            service_policy,
        });
        for name in service.names() {
            table.insert(name, Arc::clone(&entry));
        }
    }
    table
}

/// The policy that guards a resource: none with auth type NONE; with AWS_IAM, its auth policy,
/// or one that allows nothing when it has none (or it cannot be read).
async fn guard(
    client: &Client,
    arn: &str,
    auth: &AuthSetting,
    read: &mut HashMap<String, Policy>,
) -> Option<Policy> {
    if auth.auth_type != "AWS_IAM" {
        return None;
    }
    let nothing = Policy {
        statements: Vec::new(),
    };
    if !auth.policy {
        return Some(nothing);
    }
    if let Some(policy) = read.get(arn) {
        return Some(policy.clone());
    }
    let text = match client
        .get_auth_policy()
        .resource_identifier(arn)
        .send()
        .await
    {
        Ok(answer) => answer.policy.unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%arn, error = crate::logging::causes(&error), "cannot read the auth policy; nothing is allowed");
            return Some(nothing);
        }
    };
    let policy = match Policy::parse(&text) {
        Ok(policy) => policy,
        Err(error) => {
            tracing::warn!(%arn, %error, "an auth policy that cannot be evaluated; nothing is allowed");
            nothing
        }
    };
    read.insert(arn.to_string(), policy.clone());
    Some(policy)
}
