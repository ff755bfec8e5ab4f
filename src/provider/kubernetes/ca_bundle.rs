//! The private CA bundle as a ConfigMap (`lattice-xds-ca-bundle`, key `ca.crt`) in every
//! namespace the label selector picks, so that workloads other than Envoy can trust the same
//! CAs. Written by the leader with server-side apply, only when the content changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::leader;
use crate::metrics::Metrics;

/// The ConfigMap's name in each selected namespace.
pub const CONFIG_MAP: &str = "lattice-xds-ca-bundle";
/// The key holding the PEM bundle.
pub const KEY: &str = "ca.crt";
const FIELD_MANAGER: &str = "lattice-xds";

/// Keeps the ConfigMaps in line with `bundle` while `leader` is true, until `shutdown`.
pub async fn run(
    client: Client,
    selector: String,
    mut bundle: watch::Receiver<Option<String>>,
    mut leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let namespaces = watch_namespaces(client.clone(), selector, Arc::clone(&metrics));
    let (store, changed) = namespaces;
    // What was last written to each namespace.
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut failed = false;
    loop {
        let input = async {
            tokio::select! {
                changed = bundle.changed() => changed.is_ok(),
                () = changed.notified() => true,
            }
        };
        let Some(leading) = leader::next_round(input, &mut leader, failed, &shutdown).await else {
            return;
        };
        failed = false;
        if !leading {
            written.clear();
            continue;
        }
        let Some(pem) = bundle.borrow_and_update().clone() else {
            continue;
        };
        for namespace in store.state() {
            let namespace = namespace.name_any();
            if written.get(&namespace) == Some(&pem) {
                continue;
            }
            match apply(&client, &namespace, CONFIG_MAP, &pem).await {
                Ok(()) => {
                    tracing::info!(%namespace, "CA bundle ConfigMap written");
                    written.insert(namespace, pem.clone());
                }
                Err(error) => {
                    tracing::warn!(%namespace, %error, "cannot write the CA bundle ConfigMap; retrying");
                    metrics.kubernetes_write_errors.inc();
                    failed = true;
                }
            }
        }
    }
}

/// A reflector over the selected namespaces, and a notification on each change.
fn watch_namespaces(
    client: Client,
    selector: String,
    metrics: Arc<Metrics>,
) -> (Store<Namespace>, Arc<Notify>) {
    let (store, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    let notify = Arc::clone(&changed);
    tokio::spawn(async move {
        let api: Api<Namespace> = Api::all(client);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default().labels(&selector)).default_backoff(),
        );
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => notify.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, %selector, "namespace watch failed; retrying");
                    metrics.watch_failed("Namespace");
                }
            }
        }
    });
    (store, changed)
}

/// Writes ConfigMap `namespace/name` with `pem` under [`KEY`].
pub async fn apply(
    client: &Client,
    namespace: &str,
    name: &str,
    pem: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "lattice-xds".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([(KEY.to_string(), pem.to_string())].into()),
        ..Default::default()
    };
    let mut value = serde_json::to_value(&config_map).map_err(kube::Error::SerdeError)?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "ConfigMap".into();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(value),
    )
    .await?;
    Ok(())
}

/// Publishes the CA of the controller's ADS certificate (public, no key) as ConfigMap
/// `namespace/name`, key `ca.crt`, while `leader` is true: for injectors other than the
/// controller's webhook (Kyverno) to put into sidecars' bootstraps.
pub async fn publish_xds_ca(
    client: Client,
    namespace: String,
    name: String,
    certificate: Arc<crate::certificates::ServingCertificate>,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    let mut written: Option<String> = None;
    loop {
        let leading = *leader.borrow();
        if !leading {
            written = None;
        }
        if let Some(pem) = certificate.ca_pem()
            && leading
            && written.as_ref() != Some(&pem)
        {
            match apply(&client, &namespace, &name, &pem).await {
                Ok(()) => {
                    tracing::info!(%namespace, %name, "xDS CA ConfigMap written");
                    written = Some(pem);
                }
                Err(error) => {
                    tracing::warn!(%namespace, %name, %error, "cannot write the xDS CA ConfigMap; retrying");
                    metrics.kubernetes_write_errors.inc();
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
