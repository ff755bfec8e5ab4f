//! `lattice-xds policy`: evaluating IAM auth policies as VPC Lattice does.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::parse_pair;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print `Allow` or `Deny` and the statement that decided; exit 0 for Allow, 1 for Deny,
    /// 2 for bad input.
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
    /// The caller's ARN (for a pod, its role session: arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION),
    /// or `anonymous` for an unsigned request.
    #[arg(long, env = "LATTICE_XDS_PRINCIPAL")]
    pub principal: String,
    /// A session tag of the caller, KEY=VALUE (eks-cluster-name, kubernetes-namespace, …). Repeatable.
    #[arg(long = "tag", env = "LATTICE_XDS_TAG", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// The request's method.
    #[arg(long, env = "LATTICE_XDS_METHOD", default_value = "GET")]
    pub method: String,
    /// A request header, NAME=VALUE. Repeatable.
    #[arg(long = "header", env = "LATTICE_XDS_HEADER", value_parser = parse_pair)]
    pub headers: Vec<(String, String)>,
    /// A query parameter, NAME=VALUE. Repeatable.
    #[arg(long = "query", env = "LATTICE_XDS_QUERY", value_parser = parse_pair)]
    pub query: Vec<(String, String)>,
    /// The resource the call is for.
    #[arg(
        long,
        env = "LATTICE_XDS_RESOURCE",
        default_value = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/"
    )]
    pub resource: String,
}

impl From<PolicyCheckArgs> for crate::policy::check::CheckRequest {
    fn from(args: PolicyCheckArgs) -> Self {
        Self {
            policy: args.policy,
            network_policy: args.network_policy,
            principal: Some(args.principal).filter(|p| !p.eq_ignore_ascii_case("anonymous")),
            tags: args.tags.into_iter().collect(),
            method: args.method,
            headers: args.headers,
            query: args.query,
            resource: args.resource,
        }
    }
}
