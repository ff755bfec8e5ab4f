//! `lattice-xds proxy-status`: what every connected Envoy was sent, accepted and rejected.

use std::path::PathBuf;

use clap::Args;

use super::OutputArg;
use crate::model::defaults;
use crate::proxy_status::{KubernetesReplicas, Options};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Every replica of the chart's controller, found through the Kubernetes API:
  lattice-xds proxy-status --find-replicas
  # One replica, reached by hand:
  kubectl -n lattice-xds port-forward deploy/lattice-xds 19000 &
  lattice-xds proxy-status --admin 127.0.0.1:19000
  # One pod in detail, and what its Envoy holds against what it was sent:
  kubectl -n apps port-forward pod/client-7d9f 9901 &
  lattice-xds proxy-status client-7d9f.apps --find-replicas --envoy-admin 127.0.0.1:9901
  # For a script:
  lattice-xds proxy-status --find-replicas -o json")]
pub struct ProxyStatusArgs {
    /// One proxy to show in detail: its node id (`<pod>.<namespace>`) or its pod's name.
    pub node: Option<String>,
    /// The controller's admin address (a URL or HOST:PORT); repeat it, or give a
    /// comma-separated list, for several replicas.
    #[arg(
        long,
        env = "LATTICE_XDS_ADMIN",
        value_delimiter = ',',
        default_values_t = [format!("http://{}", defaults::ADMIN_LISTEN)],
        conflicts_with = "find_replicas"
    )]
    pub admin: Vec<String>,
    /// Find every replica of the controller through the Kubernetes API (its pods in
    /// --controller-namespace that match --controller-selector) and reach each through a
    /// port-forward, as `kubectl port-forward` does.
    #[arg(long, env = "LATTICE_XDS_FIND_REPLICAS")]
    pub find_replicas: bool,
    /// The kubeconfig to use; by default the usual one (KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "LATTICE_XDS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The controller's namespace.
    #[arg(
        long,
        env = "LATTICE_XDS_CONTROLLER_NAMESPACE",
        default_value = "lattice-xds"
    )]
    pub controller_namespace: String,
    /// The label selector of the controller's pods.
    #[arg(
        long,
        env = "LATTICE_XDS_CONTROLLER_SELECTOR",
        default_value = "app.kubernetes.io/name=lattice-xds"
    )]
    pub controller_selector: String,
    /// The admin port inside each controller pod.
    #[arg(
        long,
        env = "LATTICE_XDS_CONTROLLER_ADMIN_PORT",
        default_value_t = 19000
    )]
    pub controller_admin_port: u16,
    /// The detailed proxy's Envoy admin address (URL or HOST:PORT, for example a port-forward
    /// to its pod's 9901): its /config_dump is compared with what it was sent.
    #[arg(long, env = "LATTICE_XDS_ENVOY_ADMIN", requires = "node")]
    pub envoy_admin: Option<String>,
    #[command(flatten)]
    pub output: OutputArg,
}

impl From<ProxyStatusArgs> for Options {
    fn from(args: ProxyStatusArgs) -> Self {
        Self {
            kubernetes: args.find_replicas.then_some(KubernetesReplicas {
                kubeconfig: args.kubeconfig,
                namespace: args.controller_namespace,
                selector: args.controller_selector,
                port: args.controller_admin_port,
            }),
            admins: args.admin,
            node: args.node,
            envoy_admin: args.envoy_admin,
            format: args.output.output,
        }
    }
}
