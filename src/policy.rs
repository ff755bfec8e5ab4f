//! IAM auth policies as VPC Lattice evaluates them, for the local Lattice emulator and for
//! `lattice-xds policy check`.
//!
//! One policy: a matching `Deny` statement wins, then a matching `Allow`; with neither the
//! request is implicitly denied. Lattice evaluates two policies, the service network's (on the
//! Gateway) and the service's (on the route): both must allow, where a level without a policy
//! does not restrict. Supported: `Principal` (`*`, an account, an account root, a role or any
//! exact ARN), `Action`, `Resource` (with `*` and `?` wildcards) and the condition operators
//! `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`, `StringNotEqualsIgnoreCase`,
//! `StringLike`, `StringNotLike`, `Null` and `Bool`, over the condition keys VPC Lattice puts in
//! a request's context ([`CONDITION_KEYS`]). Anything else (another operator, a misspelt key such
//! as `aws:PrincipalTags/…`) is refused when the policy is read, never evaluated as absent.
//!
//! An identity-based policy (the caller's IAM role's, which AWS also evaluates: both it and the
//! auth policies must allow) is read the same way, without a `Principal`.

pub mod check;
mod context;

pub use context::{Caller, Network, Request};

use std::fmt;

use serde_json::Value;

/// The action a call to a Lattice service is authorized as.
pub const INVOKE: &str = "vpc-lattice-svcs:Invoke";

/// The condition keys VPC Lattice sets in an auth policy's request context, besides the
/// prefixes in [`CONDITION_KEY_PREFIXES`]. Names are case-insensitive, as in IAM.
pub const CONDITION_KEYS: &[&str] = &[
    "aws:PrincipalType",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:PrincipalOrgID",
    "vpc-lattice-svcs:RequestMethod",
    "vpc-lattice-svcs:Port",
    "vpc-lattice-svcs:ServiceArn",
    "vpc-lattice-svcs:ServiceNetworkArn",
    "vpc-lattice-svcs:SourceVpc",
    "vpc-lattice-svcs:SourceVpcOwnerAccount",
];

/// Condition keys that name one of many: a session tag, a request header, a query parameter.
pub const CONDITION_KEY_PREFIXES: &[&str] = &[
    "aws:PrincipalTag/",
    "vpc-lattice-svcs:RequestHeader/",
    "vpc-lattice-svcs:RequestQueryString/",
];

fn known_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    CONDITION_KEYS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(key))
        || CONDITION_KEY_PREFIXES.iter().any(|prefix| {
            lower.starts_with(&prefix.to_ascii_lowercase()) && lower.len() > prefix.len()
        })
}

/// Whose policy a document is: a resource's (an auth policy, with a `Principal`) or an
/// identity's (attached to the caller's role, without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Auth,
    Identity,
}

/// Why a policy document cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PolicyError(String);

fn error(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A parsed policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// Position in the document, from 1.
    pub number: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    principals: Principals,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
    /// The statement as written, for reports.
    pub source: Value,
}

#[derive(Clone, Debug, PartialEq)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous callers included.
    Anyone,
    Aws(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    operator: Operator,
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Null,
    Bool,
}

impl Operator {
    fn parse(name: &str) -> Result<Self, PolicyError> {
        Ok(match name {
            "StringEquals" => Self::StringEquals,
            "StringNotEquals" => Self::StringNotEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "StringLike" => Self::StringLike,
            "StringNotLike" => Self::StringNotLike,
            "Null" => Self::Null,
            "Bool" => Self::Bool,
            other => {
                return Err(error(format!(
                    "condition operator {other:?} is not supported (StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, StringNotLike, Null, Bool)"
                )));
            }
        })
    }
}

/// A value or a list of values, as IAM writes them.
fn strings(value: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let one = |value: &Value| match value {
        Value::String(text) => Ok(text.clone()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(error(format!(
            "{what} must be a string or a list of strings, not {other}"
        ))),
    };
    match value {
        Value::Array(values) => values.iter().map(one).collect(),
        value => Ok(vec![one(value)?]),
    }
}

impl Policy {
    /// Reads an auth policy document (JSON text).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Self::parse_as(text, PolicyKind::Auth)
    }

    /// Reads a policy document of either kind.
    pub fn parse_as(text: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        let document: Value = serde_json::from_str(text)
            .map_err(|e| error(format!("the policy is not JSON: {e}")))?;
        let statements = match &document["Statement"] {
            Value::Array(statements) => statements.clone(),
            Value::Object(_) => vec![document["Statement"].clone()],
            _ => return Err(error("the policy has no Statement")),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(index, statement)| {
                Statement::parse(index + 1, statement, kind)
                    .map_err(|e| error(format!("statement {}: {e}", index + 1)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// The decision of this policy alone.
    pub fn evaluate(&self, request: &Request) -> Decision<'_> {
        let matching: Vec<&Statement> = self
            .statements
            .iter()
            .filter(|statement| statement.applies_to(request))
            .collect();
        if let Some(deny) = matching.iter().find(|s| s.effect == Effect::Deny) {
            return Decision::ExplicitDeny(deny);
        }
        match matching.iter().find(|s| s.effect == Effect::Allow) {
            Some(allow) => Decision::Allow(allow),
            None => Decision::ImplicitDeny,
        }
    }
}

impl Statement {
    fn parse(number: usize, statement: &Value, kind: PolicyKind) -> Result<Statement, PolicyError> {
        let object = statement
            .as_object()
            .ok_or_else(|| error("a statement must be an object"))?;
        for unsupported in ["NotPrincipal", "NotAction", "NotResource"] {
            if object.contains_key(unsupported) {
                return Err(error(format!("{unsupported} is not supported")));
            }
        }
        let effect = match statement["Effect"].as_str() {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => return Err(error("Effect must be \"Allow\" or \"Deny\"")),
        };
        let principals = match &statement["Principal"] {
            // An identity's policy applies to that identity alone.
            Value::Null if kind == PolicyKind::Identity => Principals::Anyone,
            _ if kind == PolicyKind::Identity => {
                return Err(error(
                    "an identity-based policy names no Principal (it applies to the role it is attached to)",
                ));
            }
            Value::String(star) if star == "*" => Principals::Anyone,
            Value::Object(map) => {
                if let Some(other) = map.keys().find(|key| *key != "AWS") {
                    return Err(error(format!(
                        "Principal {other:?} is not supported (only AWS)"
                    )));
                }
                let aws = strings(&map["AWS"], "Principal.AWS")?;
                if aws.iter().any(|p| p == "*") {
                    Principals::Anyone
                } else {
                    Principals::Aws(aws)
                }
            }
            Value::Null => return Err(error("Principal is required in an auth policy")),
            other => return Err(error(format!("Principal {other} is not supported"))),
        };
        let actions = strings(&statement["Action"], "Action")?;
        let resources = match &statement["Resource"] {
            Value::Null => vec!["*".to_string()],
            value => strings(value, "Resource")?,
        };
        let mut conditions = Vec::new();
        if let Some(block) = statement.get("Condition") {
            let block = block
                .as_object()
                .ok_or_else(|| error("Condition must be an object"))?;
            for (operator, keys) in block {
                let operator = Operator::parse(operator)?;
                let keys = keys.as_object().ok_or_else(|| {
                    error(format!("Condition {operator:?} must map keys to values"))
                })?;
                for (key, values) in keys {
                    if !known_key(key) {
                        return Err(error(format!(
                            "condition key {key:?} is not one VPC Lattice sets (it would never be present): use one of {}, or {}…",
                            CONDITION_KEYS.join(", "),
                            CONDITION_KEY_PREFIXES.join("…, ")
                        )));
                    }
                    conditions.push(Condition {
                        operator,
                        key: key.clone(),
                        values: strings(values, key)?,
                    });
                }
            }
        }
        Ok(Statement {
            number,
            sid: statement["Sid"].as_str().map(str::to_string),
            effect,
            principals,
            actions,
            resources,
            conditions,
            source: statement.clone(),
        })
    }

    fn applies_to(&self, request: &Request) -> bool {
        self.principal_matches(request.caller.as_ref())
            && self.action_matches(request)
            && self.resource_matches(request)
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(request))
    }

    fn action_matches(&self, request: &Request) -> bool {
        self.actions.iter().any(|pattern| {
            wildcard(
                &pattern.to_ascii_lowercase(),
                &request.action.to_ascii_lowercase(),
            )
        })
    }

    fn resource_matches(&self, request: &Request) -> bool {
        self.resources
            .iter()
            .any(|pattern| wildcard(pattern, &request.resource))
    }

    /// Each element of the statement against `request`: what it asks for, what the request
    /// has, and whether that holds. The statement applies when all of them hold.
    pub fn checks(&self, request: &Request) -> Vec<Check> {
        let caller = request.caller.as_ref();
        let principals = match &self.principals {
            Principals::Anyone => "*".to_string(),
            Principals::Aws(principals) => principals.join(" or "),
        };
        let mut checks = vec![
            Check {
                element: "Principal".to_string(),
                expected: principals,
                seen: caller.map_or("anonymous".to_string(), |caller| caller.arn.clone()),
                holds: self.principal_matches(caller),
            },
            Check {
                element: "Action".to_string(),
                expected: self.actions.join(" or "),
                seen: request.action.clone(),
                holds: self.action_matches(request),
            },
            Check {
                element: "Resource".to_string(),
                expected: self.resources.join(" or "),
                seen: request.resource.clone(),
                holds: self.resource_matches(request),
            },
        ];
        for condition in &self.conditions {
            let present = request.context_values(&condition.key);
            checks.push(Check {
                element: format!("Condition {:?} {}", condition.operator, condition.key),
                expected: condition.values.join(" or "),
                seen: match present.is_empty() {
                    true => "nothing (the key is absent)".to_string(),
                    false => present.join(", "),
                },
                holds: condition.holds(request),
            });
        }
        checks
    }

    fn principal_matches(&self, caller: Option<&Caller>) -> bool {
        match (&self.principals, caller) {
            (Principals::Anyone, _) => true,
            (Principals::Aws(_), None) => false,
            (Principals::Aws(principals), Some(caller)) => {
                principals.iter().any(|principal| caller.is(principal))
            }
        }
    }
}

impl Condition {
    fn holds(&self, request: &Request) -> bool {
        let present = request.context_values(&self.key);
        let any = |test: &dyn Fn(&str, &str) -> bool| {
            present
                .iter()
                .any(|value| self.values.iter().any(|wanted| test(value, wanted)))
        };
        match self.operator {
            Operator::StringEquals => any(&|value, wanted| value == wanted),
            Operator::StringEqualsIgnoreCase => {
                any(&|value, wanted| value.eq_ignore_ascii_case(wanted))
            }
            Operator::StringLike => any(&|value, wanted| wildcard(wanted, value)),
            // A negated operator holds when the key is absent, as in IAM.
            Operator::StringNotEquals => !any(&|value, wanted| value == wanted),
            Operator::StringNotEqualsIgnoreCase => {
                !any(&|value, wanted| value.eq_ignore_ascii_case(wanted))
            }
            Operator::StringNotLike => !any(&|value, wanted| wildcard(wanted, value)),
            Operator::Null => self.values.iter().any(|wanted| {
                let absent = present.is_empty();
                wanted.eq_ignore_ascii_case("true") == absent
            }),
            Operator::Bool => any(&|value, wanted| value.eq_ignore_ascii_case(wanted)),
        }
    }
}

/// `*` matches any run of characters, `?` any one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// One element of a statement checked against a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `Principal`, `Action`, `Resource` or `Condition <operator> <key>`.
    pub element: String,
    pub expected: String,
    pub seen: String,
    pub holds: bool,
}

/// One policy's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision<'a> {
    Allow(&'a Statement),
    ExplicitDeny(&'a Statement),
    ImplicitDeny,
}

impl Decision<'_> {
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {}", self.number)?;
        if let Some(sid) = &self.sid {
            write!(f, " ({sid})")?;
        }
        write!(f, ": {}", self.source)
    }
}

/// The two levels of Lattice auth policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    ServiceNetwork,
    Service,
}

impl Level {
    fn based(self) -> &'static str {
        match self {
            Self::ServiceNetwork => "network-based",
            Self::Service => "service-based",
        }
    }
}

/// Lattice's answer to one request: allowed, or denied at a level with the 403 body it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { level: Level, message: String },
}

/// Evaluates the service network's policy, then the service's; a level without a policy
/// allows. Denials carry Lattice's `AccessDeniedException` text.
pub fn evaluate_lattice(
    network: Option<&Policy>,
    service: Option<&Policy>,
    request: &Request,
) -> Verdict {
    for (level, policy) in [(Level::ServiceNetwork, network), (Level::Service, service)] {
        let Some(policy) = policy else { continue };
        let reason = match policy.evaluate(request) {
            Decision::Allow(_) => continue,
            Decision::ExplicitDeny(_) => {
                format!("with an explicit deny in a {} policy", level.based())
            }
            Decision::ImplicitDeny => {
                format!(
                    "because no {} policy allows the {INVOKE} action",
                    level.based()
                )
            }
        };
        let user = request
            .caller
            .as_ref()
            .map_or("anonymous", |caller| caller.arn.as_str());
        return Verdict::Deny {
            level,
            message: format!(
                "AccessDeniedException: User: {user} is not authorized to perform: {INVOKE} on resource: {} {reason}",
                request.resource
            ),
        };
    }
    Verdict::Allow
}

#[cfg(test)]
mod tests;
