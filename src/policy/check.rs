//! `lattice-xds policy check`: a policy's decision for one caller and request, before the
//! policy is applied. Prints `Allow` or `Deny` first, then the statement that decided.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::{Caller, Decision, INVOKE, Policy, Request, Verdict, evaluate_lattice};

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    pub policy: std::path::PathBuf,
    pub network_policy: Option<std::path::PathBuf>,
    /// The caller's ARN, or `None` for an anonymous (unsigned) request.
    pub principal: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub resource: String,
}

/// Reads a policy: JSON, or an IAMAuthPolicy manifest whose `spec.policy` holds it.
pub fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json = if text.trim_start().starts_with('{') {
        text
    } else {
        // YAML: the first IAMAuthPolicy among its documents.
        let mut found = None;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let manifest = serde_yaml_ng::Value::deserialize(document)
                .with_context(|| format!("{} is neither a JSON policy nor YAML", path.display()))?;
            if manifest["kind"].as_str() == Some("IAMAuthPolicy") {
                found = manifest["spec"]["policy"].as_str().map(str::to_string);
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
    Policy::parse(&json).with_context(|| format!("{} is not a usable policy", path.display()))
}

/// Evaluates and prints; `Ok(true)` for Allow, `Ok(false)` for Deny, `Err` for bad input.
pub fn run(check: &CheckRequest) -> anyhow::Result<bool> {
    let service = read_policy(&check.policy)?;
    let network = check
        .network_policy
        .as_deref()
        .map(read_policy)
        .transpose()?;
    let request = Request {
        caller: check
            .principal
            .as_deref()
            .map(|arn| Caller::from_arn(arn, check.tags.clone())),
        action: INVOKE.to_string(),
        resource: check.resource.clone(),
        method: check.method.clone(),
        headers: check
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect(),
        query: check.query.clone(),
    };
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
    let deciding = match network
        .as_ref()
        .map(|network| explain("service network policy", network))
    {
        Some((denied, false)) => denied,
        _ => explain("service policy", &service).0,
    };
    println!("{deciding}");
    match evaluate_lattice(network.as_ref(), Some(&service), &request) {
        Verdict::Allow => Ok(true),
        Verdict::Deny { message, .. } => {
            println!("{message}");
            Ok(false)
        }
    }
}
