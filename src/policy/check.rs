//! `lattice-xds policy check`: the decision for one caller and request, before a policy is
//! applied. Prints `Allow` or `Deny` first with the statement that decided, then every
//! statement of every policy given, element by element: what it asks for, what the request
//! has, and which element kept it from applying.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::{
    Caller, Decision, INVOKE, Network, Policy, PolicyKind, Request, Verdict, evaluate_lattice,
};

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    pub policy: PathBuf,
    pub network_policy: Option<PathBuf>,
    /// The caller's role's identity-based policy, which AWS evaluates too.
    pub identity_policy: Option<PathBuf>,
    /// The caller's ARN, or `None` for an anonymous (unsigned) request.
    pub principal: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub org_id: Option<String>,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub resource: String,
    /// Whether `resource` is the placeholder used when none was given.
    pub resource_is_default: bool,
    pub network: Network,
}

/// A policy as read from a file, with what its IAMAuthPolicy manifest attaches it to.
pub struct ReadPolicy {
    pub policy: Policy,
    /// `spec.targetRef.kind` of the manifest (`Gateway`, `HTTPRoute`, ...), when it was one.
    pub target_kind: Option<String>,
}

/// Reads a policy: JSON, or an IAMAuthPolicy manifest whose `spec.policy` holds it.
pub fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    Ok(read(path, PolicyKind::Auth)?.policy)
}

fn read(path: &Path, kind: PolicyKind) -> anyhow::Result<ReadPolicy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (json, target_kind) = if text.trim_start().starts_with('{') {
        (text, None)
    } else {
        // YAML: the first IAMAuthPolicy among its documents.
        let mut found = None;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let manifest = serde_yaml_ng::Value::deserialize(document)
                .with_context(|| format!("{} is neither a JSON policy nor YAML", path.display()))?;
            if manifest["kind"].as_str() == Some("IAMAuthPolicy") {
                let policy = manifest["spec"]["policy"].as_str().map(str::to_string);
                let target = manifest["spec"]["targetRef"]["kind"].as_str();
                found = policy.map(|policy| (policy, target.map(str::to_string)));
                break;
            }
        }
        found.with_context(|| {
            format!(
                "{} holds no IAMAuthPolicy with a spec.policy",
                path.display()
            )
        })?
    };
    let policy = Policy::parse_as(&json, kind)
        .with_context(|| format!("{} is not a usable policy", path.display()))?;
    Ok(ReadPolicy {
        policy,
        target_kind,
    })
}

/// Whether `principal` is an ARN a caller can have: a role session, a role, a user or an
/// account root.
pub fn valid_principal(principal: &str) -> Result<(), String> {
    let parts: Vec<&str> = principal.splitn(6, ':').collect();
    let shape_ok = match parts.as_slice() {
        ["arn", partition, service, "", account, resource] => {
            partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && match *service {
                    "sts" => resource
                        .strip_prefix("assumed-role/")
                        .is_some_and(|rest| rest.split('/').filter(|p| !p.is_empty()).count() >= 2),
                    "iam" => {
                        *resource == "root"
                            || ["role/", "user/"].iter().any(|kind| {
                                resource
                                    .strip_prefix(kind)
                                    .is_some_and(|rest| !rest.is_empty())
                            })
                    }
                    _ => false,
                }
        }
        _ => false,
    };
    match shape_ok {
        true => Ok(()),
        false => Err(format!(
            "{principal:?} is not a caller's ARN: a pod's is its role session, arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION (also arn:aws:iam::ACCOUNT:role/ROLE, …:user/NAME or …:root); `anonymous` for an unsigned request"
        )),
    }
}

/// Evaluates and prints; `Ok(true)` for Allow, `Ok(false)` for Deny, `Err` for bad input.
pub fn run(check: &CheckRequest) -> anyhow::Result<bool> {
    let (allowed, report) = evaluate(check)?;
    crate::cli::print(&report);
    Ok(allowed)
}

/// The decision and the report that explains it.
pub fn evaluate(check: &CheckRequest) -> anyhow::Result<(bool, String)> {
    if let Some(principal) = &check.principal {
        valid_principal(principal).map_err(anyhow::Error::msg)?;
    }
    let service = read(&check.policy, PolicyKind::Auth)?;
    let network = (check.network_policy.as_deref())
        .map(|path| read(path, PolicyKind::Auth))
        .transpose()?;
    let identity = (check.identity_policy.as_deref())
        .map(|path| read(path, PolicyKind::Identity))
        .transpose()?;
    let request = Request {
        caller: check.principal.as_deref().map(|arn| Caller {
            org_id: check.org_id.clone(),
            ..Caller::from_arn(arn, check.tags.clone())
        }),
        action: INVOKE.to_string(),
        resource: check.resource.clone(),
        method: check.method.clone(),
        headers: (check.headers.iter())
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect(),
        query: check.query.clone(),
        network: check.network.clone(),
    };

    let mut out = String::new();
    // Both levels must allow; the first that does not decides. When both allow, the service's
    // own statement is the one reported.
    let explain = |label: &str, policy: &Policy| match policy.evaluate(&request) {
        Decision::Allow(statement) => (format!("Allow by the {label}'s {statement}"), true),
        Decision::ExplicitDeny(statement) => (format!("Deny by the {label}'s {statement}"), false),
        Decision::ImplicitDeny => (
            format!("Deny by the {label}: no statement allows the request"),
            false,
        ),
    };
    let deciding = match (network.as_ref())
        .map(|network| explain("service network policy", &network.policy))
    {
        Some((denied, false)) => denied,
        _ => explain("service policy", &service.policy).0,
    };
    let _ = writeln!(out, "{deciding}");
    let lattice = evaluate_lattice(
        network.as_ref().map(|read| &read.policy),
        Some(&service.policy),
        &request,
    );
    let mut allowed = match &lattice {
        Verdict::Allow => true,
        Verdict::Deny { message, .. } => {
            let _ = writeln!(out, "{message}");
            false
        }
    };
    match &identity {
        Some(identity) => {
            let (said, allows) = explain("caller's identity-based policy", &identity.policy);
            if !allows || !allowed {
                let _ = writeln!(out, "{said}");
            }
            if allowed && !allows {
                let user = check.principal.as_deref().unwrap_or("anonymous");
                let _ = writeln!(
                    out,
                    "AccessDeniedException: User: {user} is not authorized to perform: {INVOKE} on resource: {} because no identity-based policy allows the {INVOKE} action",
                    check.resource
                );
            }
            allowed &= allows;
        }
        None if check.principal.is_some() => {
            let _ = writeln!(
                out,
                "Not checked: the caller's identity-based policy (its IAM role's) must also allow {INVOKE} on this resource, as AWS evaluates both; pass it with --identity-policy"
            );
        }
        None => {}
    }

    let _ = writeln!(out, "\nThe request:");
    let caller = request.caller.as_ref();
    let _ = writeln!(
        out,
        "  caller    {}",
        caller.map_or("anonymous", |caller| caller.arn.as_str())
    );
    if let Some(caller) = caller {
        for (key, value) in &caller.tags {
            let _ = writeln!(out, "  tag       {key}={value}");
        }
    }
    let default = match check.resource_is_default {
        true => {
            " (a placeholder: pass --resource with the service's ARN, arn:aws:vpc-lattice:REGION:ACCOUNT:service/ID/PATH, when a statement names resources)"
        }
        false => "",
    };
    let _ = writeln!(out, "  resource  {}{default}", request.resource);
    let _ = writeln!(out, "  method    {}", request.method);

    for (label, read, flag, expected) in [
        (
            "service network policy",
            network.as_ref(),
            "--network-policy",
            "Gateway",
        ),
        ("service policy", Some(&service), "--policy", "HTTPRoute"),
        ("caller's identity-based policy", identity.as_ref(), "", ""),
    ] {
        let Some(read) = read else { continue };
        trace(&mut out, label, &read.policy, &request);
        match read.target_kind.as_deref() {
            Some(kind) if !flag.is_empty() && !target_matches(kind, expected) => {
                let other = match flag {
                    "--policy" => "--network-policy",
                    _ => "--policy",
                };
                let _ = writeln!(
                    out,
                    "  Note: this IAMAuthPolicy is attached to a {kind}, so VPC Lattice evaluates it as the {} policy: pass it with {other}",
                    if kind == "Gateway" {
                        "service network's"
                    } else {
                        "service's"
                    }
                );
            }
            _ => {}
        }
    }
    Ok((allowed, out))
}

/// Whether an IAMAuthPolicy attached to `kind` is a policy of the level `expected` names.
fn target_matches(kind: &str, expected: &str) -> bool {
    match expected {
        "Gateway" => kind == "Gateway",
        _ => kind != "Gateway",
    }
}

/// Every statement of `policy` against `request`, element by element.
fn trace(out: &mut String, label: &str, policy: &Policy, request: &Request) {
    let _ = writeln!(out, "\nThe {label}, statement by statement:");
    for statement in &policy.statements {
        let checks = statement.checks(request);
        let applies = checks.iter().all(|check| check.holds);
        let name = match &statement.sid {
            Some(sid) => format!("statement {} ({sid})", statement.number),
            None => format!("statement {}", statement.number),
        };
        let outcome = match applies {
            true => "applies",
            false => "does not apply",
        };
        let _ = writeln!(out, "  {name}, {:?}: {outcome}", statement.effect);
        for check in checks {
            let mark = if check.holds { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "    {mark} {}: wants {}; the request has {}",
                check.element, check.expected, check.seen
            );
        }
    }
}
