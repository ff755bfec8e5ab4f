//! The callers the emulator knows: for each, the credentials EKS Pod Identity would hand a pod
//! and the role session and session tags VPC Lattice would see.
//!
//! ```yaml
//! - name: eks-cluster1/apps/demo-cluster1-v1
//!   accessKeyId: ASIAEMULATEDCLUSTER1
//!   secretAccessKey: …
//!   sessionToken: …            # optional
//!   arn: arn:aws:sts::890742582773:assumed-role/vpc-lattice-sigv4-client/eks-eks-cluste-demo-clust-…
//!   agentToken: …              # what the pod presents to the Pod Identity agent (optional)
//!   tags: {eks-cluster-name: eks-cluster1, kubernetes-namespace: apps}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::policy::Caller;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    pub arn: String,
    #[serde(default)]
    pub agent_token: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Identity {
    pub fn caller(&self) -> Caller {
        Caller::from_arn(&self.arn, self.tags.clone())
    }
}

/// Reads the identities file, refusing duplicate access keys.
pub fn load(path: &Path) -> anyhow::Result<Vec<Identity>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the identities file {}", path.display()))?;
    let identities: Vec<Identity> = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a list of identities", path.display()))?;
    let mut keys = std::collections::BTreeSet::new();
    for identity in &identities {
        anyhow::ensure!(
            keys.insert(identity.access_key_id.as_str()),
            "{}: access key {} is listed twice",
            path.display(),
            identity.access_key_id
        );
        anyhow::ensure!(
            identity.arn.starts_with("arn:aws:"),
            "{}: identity {} has no ARN",
            path.display(),
            identity.name
        );
    }
    Ok(identities)
}
