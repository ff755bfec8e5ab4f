//! The AWS Gateway API Controller's `IAMAuthPolicy`: an IAM policy document that VPC Lattice
//! attaches to a service network (the policy targets a Gateway) or to a service (it targets an
//! HTTPRoute). The controller keeps them only to show which policy guards each destination.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The API group of the AWS Gateway API Controller's own kinds.
pub const GROUP: &str = "application-networking.k8s.aws";
/// The version its policies are served at.
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "IAMAuthPolicy";

#[derive(Clone, Debug, Deserialize)]
pub struct IamAuthPolicy {
    pub metadata: ObjectMeta,
    pub spec: IamAuthPolicySpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IamAuthPolicySpec {
    pub target_ref: TargetRef,
    /// The IAM policy document, as JSON text.
    pub policy: String,
}

/// The object a policy is attached to (Gateway API policy attachment).
#[derive(Clone, Debug, Deserialize)]
pub struct TargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    /// The policy's own namespace when absent.
    pub namespace: Option<String>,
}
