//! The Kubernetes provider: HTTPRoutes, GRPCRoutes, Gateways, GatewayClasses, IAMAuthPolicies
//! and Namespaces watched through the API server with kube-runtime reflectors.
//!
//! Each kind is watched at one version, the newest the cluster serves of `v1` and `v1beta1`,
//! so an object applied as either is seen exactly once. Nothing is published before every
//! reflector has listed its kind; after that, a re-list (an API server restart, a 410 Gone)
//! replaces a store's contents only once it is complete, so no empty or partial view is ever
//! published. Writers (Events, the CA bundle ConfigMaps) run on the elected leader only.

pub mod ca_bundle;
pub mod events;
pub mod leader;
pub mod proxy_events;
pub mod token_review;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::grpcroutes::GrpcRoute;
use k8s_openapi::api::core::v1::Namespace;

use super::policy::{self, IamAuthPolicy};
use super::{Inputs, InvalidInput, Observed, Shared, Sourced, check_object_size};
use crate::metrics::Metrics;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Gateway API versions this controller reads, preferred first.
const GATEWAY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// What `controller --kubernetes` needs besides the shared settings.
#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// An explicit kubeconfig; otherwise KUBECONFIG, in-cluster, then ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// This replica's identity in the Lease and in Events.
    pub instance: String,
    pub lease: LeaseConfig,
    /// Label selector of the namespaces that get the CA bundle ConfigMap.
    pub ca_bundle_namespaces: String,
}

/// The leader-election Lease.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub duration: Duration,
}

/// A client from the explicit kubeconfig, or the usual inference.
pub async fn client(config: &KubernetesConfig) -> anyhow::Result<Client> {
    client_from(config.kubeconfig.as_deref()).await
}

/// A client from `kubeconfig`, or the usual inference (in a pod, `KUBECONFIG`, `~/.kube/config`).
pub async fn client_from(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    use anyhow::Context;
    let client_config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes credentials: not in a cluster, and no KUBECONFIG or ~/.kube/config",
        )?,
    };
    Client::try_from(client_config).context("cannot build a Kubernetes client")
}

/// The kinds this provider reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    HttpRoute,
    GrpcRoute,
    Gateway,
    GatewayClass,
    IamAuthPolicy,
    Namespace,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::Gateway => "Gateway",
            Self::GatewayClass => "GatewayClass",
            Self::IamAuthPolicy => policy::KIND,
            Self::Namespace => "Namespace",
        }
    }
}

/// The reflector stores, by kind; the event writer reads object identities from them.
#[derive(Clone)]
pub struct Stores {
    stores: Vec<(Kind, ApiResource, Store<DynamicObject>)>,
}

impl Stores {
    fn get(&self, kind: Kind) -> Option<&(Kind, ApiResource, Store<DynamicObject>)> {
        self.stores.iter().find(|(k, ..)| *k == kind)
    }

    /// The object a report names (`kind`, `namespace/name`), with its uid and served version.
    pub fn reference(
        &self,
        kind: &str,
        object: &str,
    ) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        let (_, resource, store) = self.stores.iter().find(|(k, ..)| k.name() == kind)?;
        let key = match object.split_once('/') {
            Some((namespace, name)) => {
                reflector::ObjectRef::new_with(name, resource.clone()).within(namespace)
            }
            None => reflector::ObjectRef::new_with(object, resource.clone()),
        };
        let found = store.get(&key)?;
        Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(resource.api_version.clone()),
            kind: Some(resource.kind.clone()),
            name: Some(found.name_any()),
            namespace: found.namespace(),
            uid: found.uid(),
            resource_version: found.resource_version(),
            ..Default::default()
        })
    }
}

/// Why the provider cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(
        "the API server does not serve {GATEWAY_GROUP} {kind} at v1 or v1beta1; are the Gateway API CRDs installed?"
    )]
    NotServed { kind: &'static str },
    #[error("cannot discover the API group {group}")]
    Discovery {
        group: &'static str,
        source: kube::Error,
    },
}

/// The served version of each kind, found by discovery. IAMAuthPolicy is optional: without the
/// AWS Gateway API Controller's CRDs, destinations simply show no policy.
async fn discover(client: &Client) -> Result<Vec<(Kind, ApiResource)>, KubernetesError> {
    let group = kube::discovery::group(client, GATEWAY_GROUP)
        .await
        .map_err(|source| KubernetesError::Discovery {
            group: GATEWAY_GROUP,
            source,
        })?;
    let mut resources = Vec::new();
    for kind in [Kind::GatewayClass, Kind::Gateway, Kind::HttpRoute] {
        let served = GATEWAY_VERSIONS.iter().find_map(|version| {
            group
                .versioned_resources(version)
                .into_iter()
                .find(|(resource, _)| resource.kind == kind.name())
        });
        let (resource, _) = served.ok_or(KubernetesError::NotServed { kind: kind.name() })?;
        tracing::info!(kind = kind.name(), version = %resource.version, "watching");
        resources.push((kind, resource));
    }
    // GRPCRoute joined the standard channel in Gateway API 1.1: without it, only HTTPRoutes
    // become destinations.
    let grpc = GATEWAY_VERSIONS.iter().find_map(|version| {
        group
            .versioned_resources(version)
            .into_iter()
            .find(|(resource, _)| resource.kind == Kind::GrpcRoute.name())
    });
    match grpc {
        Some((resource, _)) => {
            tracing::info!(kind = Kind::GrpcRoute.name(), version = %resource.version, "watching");
            resources.push((Kind::GrpcRoute, resource));
        }
        None => tracing::warn!("GRPCRoute is not served; only HTTPRoutes become destinations"),
    }
    match kube::discovery::group(client, policy::GROUP).await {
        Ok(group) => {
            if let Some((resource, _)) = group
                .versioned_resources(policy::VERSION)
                .into_iter()
                .find(|(resource, _)| resource.kind == policy::KIND)
            {
                resources.push((Kind::IamAuthPolicy, resource));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "IAMAuthPolicy is not served; destinations will show no auth policy")
        }
    }
    // Their labels decide which routes a listener with `allowedRoutes.namespaces.from:
    // Selector` admits.
    let namespaces = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    resources.push((Kind::Namespace, namespaces));
    Ok(resources)
}

/// Watches every kind and publishes the combined view after each change, once every kind has
/// been listed. Runs until `updates` is closed.
pub async fn watch(
    client: Client,
    updates: watch::Sender<Option<Arc<Observed>>>,
    stores_out: watch::Sender<Option<Stores>>,
    metrics: Arc<Metrics>,
) -> Result<(), KubernetesError> {
    let resources = discover(&client).await?;
    let changed = Arc::new(Notify::new());
    let mut stores = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, resource) in resources {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        stores.push((kind, resource, store));
        let changed = Arc::clone(&changed);
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    // Mid-relist events change only the store's buffer, not what it serves.
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(_) => changed.notify_one(),
                    Err(error) => {
                        tracing::warn!(kind = kind.name(), %error, "watch failed; retrying with backoff, the last listed state stays served");
                        metrics.watch_failed(kind.name());
                    }
                }
            }
        });
    }
    let stores = Stores { stores };
    for (kind, _, store) in &stores.stores {
        if store.wait_until_ready().await.is_err() {
            tracing::error!(kind = kind.name(), "reflector ended before its first list");
            return Ok(());
        }
    }
    tracing::info!("initial list complete");
    stores_out.send_replace(Some(stores.clone()));
    let mut decoded = Decoded::default();
    loop {
        // Decoding thousands of objects takes a while: off the async workers.
        let snapshot = stores.clone();
        let mut moved = std::mem::take(&mut decoded);
        let observing = tokio::task::spawn_blocking(move || {
            let observed = moved.observe(&snapshot);
            (moved, observed)
        });
        match observing.await {
            Ok((back, observed)) => {
                decoded = back;
                updates.send_replace(Some(Arc::new(observed)));
            }
            // A panic in decoding is this task's panic, for the supervisor to report.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down.
            Err(_) => return Ok(()),
        }
        tokio::select! {
            () = changed.notified() => {}
            () = updates.closed() => return Ok(()),
        }
    }
}

/// The objects of every store as decoded so far, each with the store's object it was decoded
/// from: an object the store still holds unchanged (the same allocation; the reflector
/// replaces an object that changes) is not decoded again.
#[derive(Default)]
struct Decoded {
    routes: Cache<HttpRoute>,
    grpc_routes: Cache<GrpcRoute>,
    gateways: Cache<Gateway>,
    classes: Cache<GatewayClass>,
    auth_policies: Cache<IamAuthPolicy>,
    namespaces: Cache<Namespace>,
}

/// Decoded objects by `namespace/name`: the store's object and what it decoded to, or why it
/// did not.
type Cache<T> = BTreeMap<String, (Arc<DynamicObject>, Result<Shared<T>, String>)>;

impl Decoded {
    /// The current contents of every store as provider inputs; objects that do not decode are
    /// reported, not served.
    fn observe(&mut self, stores: &Stores) -> Observed {
        let mut observed = Observed::default();
        let Inputs {
            routes,
            grpc_routes,
            gateways,
            classes,
            auth_policies,
            namespaces,
        } = &mut observed.inputs;
        let invalid = &mut observed.invalid;
        collect(stores, Kind::HttpRoute, &mut self.routes, routes, invalid);
        collect(
            stores,
            Kind::GrpcRoute,
            &mut self.grpc_routes,
            grpc_routes,
            invalid,
        );
        collect(stores, Kind::Gateway, &mut self.gateways, gateways, invalid);
        collect(
            stores,
            Kind::GatewayClass,
            &mut self.classes,
            classes,
            invalid,
        );
        collect(
            stores,
            Kind::IamAuthPolicy,
            &mut self.auth_policies,
            auth_policies,
            invalid,
        );
        collect(
            stores,
            Kind::Namespace,
            &mut self.namespaces,
            namespaces,
            invalid,
        );
        observed
    }
}

fn collect<T: DeserializeOwned>(
    stores: &Stores,
    kind: Kind,
    cache: &mut Cache<T>,
    into: &mut Vec<Shared<T>>,
    invalid: &mut Vec<InvalidInput>,
) {
    let Some((_, _, store)) = stores.get(kind) else {
        return;
    };
    let mut objects = store.state();
    objects.sort_by_key(|object| (object.namespace(), object.name_any()));
    let mut decoded = Cache::new();
    for object in objects {
        let name = match object.namespace() {
            Some(namespace) => format!("{namespace}/{}", object.name_any()),
            None => object.name_any(),
        };
        let result = match cache.remove(&name) {
            Some((before, result)) if Arc::ptr_eq(&before, &object) => result,
            _ => decode(kind, &name, &object),
        };
        match &result {
            Ok(shared) => into.push(Arc::clone(shared)),
            Err(reason) => invalid.push(InvalidInput {
                origin: "kubernetes".to_string(),
                kind: kind.name().to_string(),
                object: Some(name.clone()),
                reason: reason.clone(),
            }),
        }
        decoded.insert(name, (object, result));
    }
    *cache = decoded;
}

/// One store object as the provider's type, or why it is not one.
fn decode<T: DeserializeOwned>(
    kind: Kind,
    name: &str,
    object: &DynamicObject,
) -> Result<Shared<T>, String> {
    let value = serde_json::to_value(object).map_err(|error| format!("cannot be read: {error}"))?;
    check_object_size(&value)?;
    let decoded = serde_json::from_value::<T>(value)
        .map_err(|error| format!("does not match the schema: {error}"))?;
    Ok(Arc::new(Sourced {
        origin: format!("kubernetes {} {name}", kind.name()),
        object: decoded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object the store still holds unchanged is not decoded again: the provider hands out
    /// the same shared value. A replaced object is decoded anew, and a deleted one is gone.
    #[test]
    fn only_replaced_objects_are_decoded_again() {
        let resource = ApiResource::erase::<Namespace>(&());
        let mut writer = reflector::store::Writer::new(resource.clone());
        let namespace = |name: &str, team: &str| {
            let mut object = DynamicObject::new(name, &resource);
            object.metadata.labels = Some([("team".to_string(), team.to_string())].into());
            object
        };
        writer.apply_watcher_event(&watcher::Event::Apply(namespace("a", "x")));
        writer.apply_watcher_event(&watcher::Event::Apply(namespace("b", "x")));
        let stores = Stores {
            stores: vec![(Kind::Namespace, resource.clone(), writer.as_reader())],
        };
        let mut decoded = Decoded::default();
        let first = decoded.observe(&stores).inputs.namespaces;
        assert_eq!(first.len(), 2);

        writer.apply_watcher_event(&watcher::Event::Apply(namespace("b", "y")));
        let second = decoded.observe(&stores).inputs.namespaces;
        assert!(Arc::ptr_eq(&first[0], &second[0]), "a did not change");
        assert!(!Arc::ptr_eq(&first[1], &second[1]), "b was replaced");
        let labels = second[1].object.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "y");

        writer.apply_watcher_event(&watcher::Event::Delete(namespace("a", "x")));
        let third = decoded.observe(&stores).inputs.namespaces;
        assert_eq!(third.len(), 1);
        assert!(Arc::ptr_eq(&second[1], &third[0]));
    }
}
