//! `lattice-xds policy`: evaluating IAM auth policies as VPC Lattice does.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::parse_pair;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print `Allow` or `Deny` and the statement that decided, then every statement of every
    /// policy element by element (what it wants, what the request has); exit 0 for Allow, 1 for
    /// Deny, 2 for bad input.
    #[command(after_help = "Examples:
  # The walkthrough: may eks-cluster1's demo pod call demo-cluster1?
  lattice-xds policy check --policy examples/cluster1/policy.yaml \\
    --principal arn:aws:sts::111122223333:assumed-role/demo-role/eks-eks-cluste-demo-1234 \\
    --tag eks-cluster-name=eks-cluster1 --tag kubernetes-namespace=apps
  # Both levels and the caller's own role policy, for a POST with a header:
  lattice-xds policy check --network-policy gateway-policy.json --policy service-policy.json \\
    --identity-policy role-policy.json --principal ARN --method POST --header x-team=payments \\
    --resource arn:aws:vpc-lattice:us-west-2:111122223333:service/svc-0123456789abcdef0/orders

VPC Lattice allows a call only when the service network's policy, the service's policy and the
caller's identity-based policy all allow it. Condition keys VPC Lattice does not set are refused
by name: a misspelt key would otherwise never match.")]
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The service's policy: JSON, or an IAMAuthPolicy manifest.
    #[arg(long, env = "LATTICE_XDS_POLICY")]
    pub policy: PathBuf,
    /// The service network's policy (on the Gateway); both must allow.
    #[arg(long, env = "LATTICE_XDS_NETWORK_POLICY")]
    pub network_policy: Option<PathBuf>,
    /// The caller's identity-based policy (its IAM role's policies, JSON): AWS evaluates it
    /// too, and it must allow vpc-lattice-svcs:Invoke on the service.
    #[arg(long, env = "LATTICE_XDS_IDENTITY_POLICY")]
    pub identity_policy: Option<PathBuf>,
    /// The caller's ARN (for a pod, its role session: arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION),
    /// or `anonymous` for an unsigned request.
    #[arg(long, env = "LATTICE_XDS_PRINCIPAL")]
    pub principal: String,
    /// A session tag of the caller, KEY=VALUE (eks-cluster-name, kubernetes-namespace, …). Repeatable.
    #[arg(long = "tag", env = "LATTICE_XDS_TAG", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// The AWS Organizations id of the caller's account (aws:PrincipalOrgID).
    #[arg(long, env = "LATTICE_XDS_PRINCIPAL_ORG_ID")]
    pub principal_org_id: Option<String>,
    /// The request's method.
    #[arg(long, env = "LATTICE_XDS_METHOD", default_value = "GET")]
    pub method: String,
    /// A request header, NAME=VALUE. Repeatable.
    #[arg(long = "header", env = "LATTICE_XDS_HEADER", value_parser = parse_pair)]
    pub headers: Vec<(String, String)>,
    /// A query parameter, NAME=VALUE. Repeatable.
    #[arg(long = "query", env = "LATTICE_XDS_QUERY", value_parser = parse_pair)]
    pub query: Vec<(String, String)>,
    /// The resource the call is for: the service's ARN and the request path. Without it, a
    /// placeholder, and the report says so.
    #[arg(long, env = "LATTICE_XDS_RESOURCE")]
    pub resource: Option<String>,
    /// The service listener's port (vpc-lattice-svcs:Port).
    #[arg(long, env = "LATTICE_XDS_PORT", default_value_t = 443)]
    pub port: u16,
    /// The VPC the call comes from (vpc-lattice-svcs:SourceVpc).
    #[arg(long, env = "LATTICE_XDS_SOURCE_VPC")]
    pub source_vpc: Option<String>,
    /// The account that owns that VPC (vpc-lattice-svcs:SourceVpcOwnerAccount).
    #[arg(long, env = "LATTICE_XDS_SOURCE_VPC_OWNER")]
    pub source_vpc_owner: Option<String>,
    /// The service network the call comes through (vpc-lattice-svcs:ServiceNetworkArn).
    #[arg(long, env = "LATTICE_XDS_SERVICE_NETWORK_ARN")]
    pub service_network_arn: Option<String>,
}

/// The resource when none is given.
const PLACEHOLDER_RESOURCE: &str =
    "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/";

impl From<PolicyCheckArgs> for crate::policy::check::CheckRequest {
    fn from(args: PolicyCheckArgs) -> Self {
        Self {
            policy: args.policy,
            network_policy: args.network_policy,
            identity_policy: args.identity_policy,
            principal: Some(args.principal).filter(|p| !p.eq_ignore_ascii_case("anonymous")),
            tags: args.tags.into_iter().collect(),
            org_id: args.principal_org_id,
            method: args.method,
            headers: args.headers,
            query: args.query,
            resource_is_default: args.resource.is_none(),
            resource: args
                .resource
                .unwrap_or_else(|| PLACEHOLDER_RESOURCE.to_string()),
            network: crate::policy::Network {
                port: Some(args.port.to_string()),
                source_vpc: args.source_vpc,
                source_vpc_owner: args.source_vpc_owner,
                service_network_arn: args.service_network_arn,
            },
        }
    }
}
