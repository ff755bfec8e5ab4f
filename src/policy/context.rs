//! The request context a policy is evaluated against: who calls (the role session EKS Pod
//! Identity gave the pod, with its session tags) and what the call is.

use std::collections::BTreeMap;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's ARN, for a pod `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub arn: String,
    pub account: String,
    /// `AssumedRole` for Pod Identity and IRSA sessions.
    pub principal_type: String,
    /// Session tags by key (EKS Pod Identity: `eks-cluster-name`, `kubernetes-namespace`, …).
    pub tags: BTreeMap<String, String>,
    /// The AWS Organizations organization of the caller's account, when known.
    pub org_id: Option<String>,
}

impl Caller {
    /// A caller from its ARN: the account and principal type are read from it.
    pub fn from_arn(arn: &str, tags: BTreeMap<String, String>) -> Caller {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let account = parts.get(4).copied().unwrap_or_default().to_string();
        let resource = parts.get(5).copied().unwrap_or_default();
        let principal_type = if resource.starts_with("assumed-role/") {
            "AssumedRole"
        } else if resource.starts_with("user/") {
            "User"
        } else if resource == "root" {
            "Account"
        } else {
            "Role"
        };
        Caller {
            arn: arn.to_string(),
            account,
            principal_type: principal_type.to_string(),
            tags,
            org_id: None,
        }
    }

    /// Whether a policy's principal names this caller: the account (`123456789012` or its
    /// root ARN), the role it assumed, or its exact ARN.
    pub fn is(&self, principal: &str) -> bool {
        if principal == self.account || principal == format!("arn:aws:iam::{}:root", self.account) {
            return true;
        }
        if let Some(role) = principal
            .strip_prefix(&format!("arn:aws:iam::{}:role/", self.account))
            .map(|path| path.rsplit('/').next().unwrap_or(path))
        {
            let session_of = format!("arn:aws:sts::{}:assumed-role/{role}/", self.account);
            return self.arn.starts_with(&session_of) || self.arn == principal;
        }
        self.arn == principal
    }
}

/// One call to a Lattice service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `None` for an unsigned (anonymous) request.
    pub caller: Option<Caller>,
    pub action: String,
    /// `arn:aws:vpc-lattice:<region>:<account>:service/<id>/<path>`.
    pub resource: String,
    pub method: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// Where the request came from and through what: absent when not known.
    pub network: Network,
}

/// The network facts VPC Lattice adds to a request's context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// The service's listener port, in decimal (as conditions compare it).
    pub port: Option<String>,
    /// The VPC the request came from, and the account that owns it.
    pub source_vpc: Option<String>,
    pub source_vpc_owner: Option<String>,
    /// The service network the request came through.
    pub service_network_arn: Option<String>,
}

impl Request {
    /// The values of a condition key in this request; empty when the key is absent. Key names
    /// are case-insensitive, as in IAM.
    pub fn context_values(&self, key: &str) -> Vec<&str> {
        let lower = key.to_ascii_lowercase();
        let caller = self.caller.as_ref();
        if let Some(tag) = lower.strip_prefix("aws:principaltag/") {
            return caller
                .into_iter()
                .flat_map(|caller| caller.tags.iter())
                .filter(|(name, _)| name.eq_ignore_ascii_case(tag))
                .map(|(_, value)| value.as_str())
                .collect();
        }
        if let Some(name) = lower.strip_prefix("vpc-lattice-svcs:requestheader/") {
            return self
                .headers
                .iter()
                .filter(|(header, _)| header.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
                .collect();
        }
        if let Some(name) = key
            .get("vpc-lattice-svcs:RequestQueryString/".len()..)
            .filter(|_| lower.starts_with("vpc-lattice-svcs:requestquerystring/"))
        {
            return self
                .query
                .iter()
                .filter(|(parameter, _)| parameter == name)
                .map(|(_, value)| value.as_str())
                .collect();
        }
        let network = &self.network;
        match lower.as_str() {
            "aws:principaltype" => vec![caller.map_or("Anonymous", |c| c.principal_type.as_str())],
            "aws:principalaccount" => caller.map(|c| c.account.as_str()).into_iter().collect(),
            "aws:principalarn" => caller.map(|c| c.arn.as_str()).into_iter().collect(),
            "aws:principalorgid" => caller
                .and_then(|c| c.org_id.as_deref())
                .into_iter()
                .collect(),
            "vpc-lattice-svcs:requestmethod" => vec![self.method.as_str()],
            "vpc-lattice-svcs:port" => network.port.as_deref().into_iter().collect(),
            "vpc-lattice-svcs:servicearn" => self.service_arn().into_iter().collect(),
            "vpc-lattice-svcs:servicenetworkarn" => {
                network.service_network_arn.as_deref().into_iter().collect()
            }
            "vpc-lattice-svcs:sourcevpc" => network.source_vpc.as_deref().into_iter().collect(),
            "vpc-lattice-svcs:sourcevpcowneraccount" => {
                network.source_vpc_owner.as_deref().into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The service's ARN: the resource without the request path
    /// (`arn:aws:vpc-lattice:<region>:<account>:service/<id>`).
    fn service_arn(&self) -> Option<&str> {
        let (_, rest) = self.resource.split_once(":service/")?;
        let id = rest.split('/').next()?;
        let end = self.resource.len() - rest.len() + id.len();
        Some(&self.resource[..end])
    }
}
