//! Kubernetes Events on the pods whose Envoy rejects a configuration, and again when it accepts
//! one: `kubectl describe pod` and `kubectl get events` show a sidecar stuck on an older
//! configuration, and its recovery. Every replica writes them for the streams it serves. The
//! pod is named by the node id, `<pod>.<namespace>`, which `--xds-auth kubernetes` holds to the
//! pod the stream's token names; streams that did not authenticate get no Event, so that no
//! client can have Warnings written on pods it is not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio_util::sync::CancellationToken;

use super::events::{self, truncate};
use crate::metrics::Metrics;
use crate::xds::registry::Registry;
use crate::xds::type_url;

/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// A stream's rejection that has been reported: which pod, which type, which version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    node_id: String,
    type_url: String,
}

/// Writes Events as streams of `registry` start and stop rejecting, until `shutdown`.
pub async fn run(
    client: Client,
    instance: String,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let recorder = events::recorder(client, instance);
    let mut changes = registry.rejections();
    // The rejected version reported for each stream and type.
    let mut reported: BTreeMap<Key, String> = BTreeMap::new();
    let mut failed = false;
    loop {
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = retry => {}
            () = shutdown.cancelled() => return,
        }
        failed = false;
        let mut rejecting = BTreeMap::new();
        let mut accepted = BTreeMap::new();
        // Only streams that authenticated as their pod speak for it.
        for proxy in registry.list().into_iter().filter(|p| p.identity.is_some()) {
            for status in proxy.types {
                let key = Key {
                    node_id: proxy.node_id.clone(),
                    type_url: status.type_url.clone(),
                };
                match status.rejected {
                    None => {
                        accepted.insert(key, status.acked_version);
                    }
                    Some(rejected) => {
                        rejecting.insert(key, (rejected.version, rejected.error));
                    }
                }
            }
        }
        for (key, (version, error)) in &rejecting {
            if reported.get(key) == Some(version) {
                continue;
            }
            let note = format!(
                "Envoy rejected {} version {version}: {error}",
                type_url::short(&key.type_url)
            );
            let result = publish(
                &recorder,
                &key.node_id,
                EventType::Warning,
                "ConfigRejected",
                note,
            )
            .await;
            if written(result, &key.node_id, &metrics) {
                reported.insert(key.clone(), version.clone());
            } else {
                failed = true;
            }
        }
        // Reported rejections that have ended: accepted since (an Event), or gone with their
        // stream (nothing to say).
        let ended: Vec<(Key, String)> = reported
            .iter()
            .filter(|(key, _)| !rejecting.contains_key(key))
            .map(|(key, version)| (key.clone(), version.clone()))
            .collect();
        for (key, rejected) in ended {
            if let Some(version) = accepted.get(&key) {
                let note = format!(
                    "Envoy accepted {} version {version} after rejecting version {rejected}",
                    type_url::short(&key.type_url)
                );
                let result = publish(
                    &recorder,
                    &key.node_id,
                    EventType::Normal,
                    "ConfigAccepted",
                    note,
                )
                .await;
                if !written(result, &key.node_id, &metrics) {
                    failed = true;
                    continue;
                }
            }
            reported.remove(&key);
        }
    }
}

/// Counts a write; false when it failed and is to be tried again.
fn written(result: Result<bool, kube::Error>, node_id: &str, metrics: &Metrics) -> bool {
    match result {
        Ok(true) => {
            metrics.events_written.inc();
            true
        }
        Ok(false) => true,
        Err(error) => {
            tracing::warn!(%error, node = node_id, "cannot write an Event; retrying");
            metrics.kubernetes_write_errors.inc();
            false
        }
    }
}

/// Writes one Event on the pod `node_id` names; `Ok(false)` when it names none.
async fn publish(
    recorder: &Recorder,
    node_id: &str,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<bool, kube::Error> {
    let Some(pod) = pod(node_id) else {
        tracing::debug!(
            node = node_id,
            "no pod to write an Event on: the node id is not <pod>.<namespace>"
        );
        return Ok(false);
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(&note, 1000)),
        action: "Push".to_string(),
        secondary: None,
    };
    recorder.publish(&event, &pod).await?;
    Ok(true)
}

/// The pod a node id `<pod>.<namespace>` names. A namespace is a DNS label, so it holds no
/// dot; a pod name may.
fn pod(node_id: &str) -> Option<ObjectReference> {
    let (name, namespace) = node_id.rsplit_once('.')?;
    let label = |text: &str, limit: usize| {
        !text.is_empty()
            && text.len() <= limit
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !label(name, 253) || !label(namespace, 63) || namespace.contains('.') {
        return None;
    }
    Some(ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::pod;

    #[test]
    fn a_node_id_names_a_pod_only_as_pod_dot_namespace() {
        let named = pod("client-7d9f.apps").unwrap();
        assert_eq!(named.name.as_deref(), Some("client-7d9f"));
        assert_eq!(named.namespace.as_deref(), Some("apps"));
        let dotted = pod("web.v2.apps").unwrap();
        assert_eq!(dotted.name.as_deref(), Some("web.v2"));
        assert_eq!(dotted.namespace.as_deref(), Some("apps"));
        for not_a_pod in [
            "raw-client",
            ".apps",
            "client.",
            "Client.apps",
            "client.ap ps",
        ] {
            assert!(pod(not_a_pod).is_none(), "{not_a_pod}");
        }
    }
}
