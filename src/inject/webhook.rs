//! The mutating admission webhook, over HTTPS. Two paths, so that the webhook configuration
//! (not the controller) decides which namespaces opted in, and only pods that opted in are
//! sent at all:
//! - `/inject/namespace`: the pod's namespace carries the inject label; every pod is injected
//!   unless it opts out (label `disabled`, or the annotation set to `"false"`);
//! - `/inject/pod` (and `/inject/annotation`, its name before labels): the pod itself carries
//!   the inject label.
//!
//! Pods with `hostNetwork`, and pods of `kube-system` or the controller's namespace, are
//! admitted unchanged with a warning the user sees.
//!
//! A request the webhook cannot read is answered with an error the API server shows the user;
//! whether the pod is then admitted is the configuration's `failurePolicy`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Decision, InjectConfig, NEVER_INJECTED, decide, inject};
use crate::certificates::ServingCertificate;
use crate::connections::ConnectionLimits;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Webhook {
    config: Arc<InjectConfig>,
    /// The ADS server's certificate, when ADS is served over TLS: sidecars get its CA.
    xds_certificate: Option<Arc<ServingCertificate>>,
    metrics: Arc<Metrics>,
}

/// Serves the webhook on `listener` with the certificate in `serving` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    serving: Arc<ServingCertificate>,
    config: InjectConfig,
    xds_certificate: Option<Arc<ServingCertificate>>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let webhook = Webhook {
        config: Arc::new(config),
        xds_certificate,
        metrics,
    };
    let app = Router::new()
        .route("/inject/namespace", post(namespace_opted_in))
        .route("/inject/pod", post(pod_opted_in))
        .route("/inject/annotation", post(pod_opted_in))
        .with_state(webhook);
    crate::https::serve(listener, serving, app, limits, shutdown).await
}

async fn namespace_opted_in(
    State(webhook): State<Webhook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(webhook.review(review, true))
}

async fn pod_opted_in(
    State(webhook): State<Webhook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(webhook.review(review, false))
}

impl Webhook {
    fn review(
        &self,
        review: AdmissionReview<DynamicObject>,
        namespace_opted_in: bool,
    ) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(error) => {
                return AdmissionResponse::invalid(format!(
                    "lattice-xds: not an admission review: {error}"
                ))
                .into_review();
            }
        };
        let response = self.respond(&request, namespace_opted_in);
        response.into_review()
    }

    fn respond(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        namespace_opted_in: bool,
    ) -> AdmissionResponse {
        let allowed = AdmissionResponse::from(request);
        let Some(object) = &request.object else {
            return allowed;
        };
        if request.kind.kind != "Pod" {
            return allowed;
        }
        let pod = match serde_json::to_value(object) {
            Ok(pod) => pod,
            Err(error) => {
                return allowed.deny(format!("lattice-xds: cannot read the pod: {error}"));
            }
        };
        let name = request.name.clone();
        let namespace = request.namespace.clone().unwrap_or_default();
        let excluded = NEVER_INJECTED.contains(&namespace.as_str())
            || namespace == self.config.controller_namespace;
        let decision = decide(&pod, namespace_opted_in);
        let label = match decision {
            Decision::Inject if excluded => "excluded_namespace",
            Decision::Inject => "injected",
            Decision::NotRequested => "not_requested",
            Decision::OptedOut => "opted_out",
            Decision::AlreadyInjected => "already_injected",
            Decision::HostNetwork => "host_network",
        };
        self.metrics
            .injections
            .get_or_create(&crate::metrics::DecisionLabel {
                decision: label.to_string(),
            })
            .inc();
        if decision == Decision::HostNetwork {
            tracing::info!(%namespace, pod = %name, "not injected: the pod uses the host's network");
            return warned(
                allowed,
                "lattice-xds: pods with hostNetwork are never injected (the redirect would change the node's iptables); this pod has no sidecar and its requests are not signed".to_string(),
            );
        }
        if decision == Decision::Inject && excluded {
            tracing::info!(%namespace, pod = %name, "not injected: the namespace is never injected");
            return warned(
                allowed,
                format!(
                    "lattice-xds: pods of namespace {namespace} are never injected; this pod has no sidecar"
                ),
            );
        }
        if decision != Decision::Inject {
            tracing::debug!(%namespace, pod = %name, ?decision, "not injected");
            return allowed;
        }
        let xds_ca = match &self.xds_certificate {
            None => None,
            Some(certificate) => match certificate.ca_pem() {
                Some(ca) => Some(ca),
                None => {
                    return allowed.deny(
                        "lattice-xds: the controller's xDS certificate is not ready yet; the pod can be created again in a moment",
                    );
                }
            },
        };
        let patch = json_patch::diff(&pod, &inject(&pod, &self.config, xds_ca.as_deref()));
        tracing::info!(%namespace, pod = %name, "sidecar injected");
        match allowed.with_patch(patch) {
            Ok(response) => response,
            Err(error) => AdmissionResponse::from(request).deny(format!(
                "lattice-xds: cannot encode the injection patch: {error}"
            )),
        }
    }
}

/// The response with a warning the API server shows whoever created the pod.
fn warned(mut response: AdmissionResponse, warning: String) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).push(warning);
    response
}

/// Binds the webhook listener, naming the address on failure.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for the webhook on {address}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SigningMode;

    fn webhook() -> Webhook {
        Webhook {
            config: Arc::new(crate::inject::tests::config(SigningMode::ExtProc)),
            xds_certificate: None,
            metrics: Arc::default(),
        }
    }

    /// The webhook's answer for a pod labelled to opt in, in `namespace`.
    fn answer(namespace: &str, host_network: bool) -> AdmissionResponse {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0f1e2d3c",
                "kind": { "group": "", "version": "v1", "kind": "Pod" },
                "resource": { "group": "", "version": "v1", "resource": "pods" },
                "name": "client",
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": { "username": "admin" },
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": { "name": "client", "namespace": namespace,
                                  "labels": { "lattice-xds/inject": "enabled" } },
                    "spec": { "hostNetwork": host_network,
                              "containers": [{ "name": "app", "image": "busybox" }] }
                }
            }
        }))
        .unwrap();
        let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
        webhook().respond(&request, false)
    }

    #[test]
    fn some_pods_are_admitted_unchanged_with_a_warning() {
        for (namespace, host_network, warning) in [
            (
                "kube-system",
                false,
                "pods of namespace kube-system are never injected",
            ),
            (
                "lattice-xds",
                false,
                "pods of namespace lattice-xds are never injected",
            ),
            ("apps", true, "pods with hostNetwork are never injected"),
        ] {
            let response = answer(namespace, host_network);
            assert!(response.allowed, "{namespace}");
            assert!(response.patch.is_none(), "{namespace}: patched");
            let warnings = response.warnings.unwrap_or_default();
            assert!(
                warnings.iter().any(|w| w.contains(warning)),
                "{namespace}: {warnings:?}"
            );
        }
        let injected = answer("apps", false);
        assert!(injected.allowed && injected.patch.is_some());
    }
}
