//! Reads Gateway API objects (and the AWS controller's IAMAuthPolicies, and Namespaces for their
//! labels) out of multi-document YAML text. Pure: no file system access, so
//! the same code serves the watched directory and the golden tests.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::{InvalidInput, Observed, Shared, Sourced, check_object_size, policy};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const SERVED_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// How deep flow collections (`[`, `{`) may nest; Gateway API objects need a handful.
pub const MAX_NESTING: usize = 64;
/// How far a line may be indented; block nesting that deep is no Kubernetes object.
pub const MAX_INDENT: usize = 256;

/// Parses every document in `text`; `origin` names the file in reports.
///
/// Objects of other kinds or API groups are ignored. A document that is not YAML, or a known
/// kind that does not match its schema, is reported and skipped. Text nested deeper than any
/// object can be is refused whole before parsing, since parsing it costs time out of all
/// proportion to its size.
pub fn parse(origin: &str, text: &str, observed: &mut Observed) {
    if let Err(reason) = check_nesting(text) {
        observed.invalid.push(InvalidInput {
            origin: origin.to_string(),
            kind: "file".to_string(),
            object: None,
            reason,
        });
        return;
    }
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let origin = format!("{origin}#{}", index + 1);
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => parse_object(&origin, value, observed),
            Err(error) => {
                observed.invalid.push(InvalidInput {
                    origin,
                    kind: "document".to_string(),
                    object: None,
                    reason: format!("not valid YAML: {error}"),
                });
                // The parser cannot find the next document boundary after a syntax error.
                return;
            }
        }
    }
}

/// Refuses text whose flow collections nest deeper than [`MAX_NESTING`] or whose lines are
/// indented further than [`MAX_INDENT`], with a cheap scan that skips quoted text and comments.
fn check_nesting(text: &str) -> Result<(), String> {
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if indent > MAX_INDENT {
            return Err(format!(
                "line {} is indented {indent} columns, more than the {MAX_INDENT} allowed; not parsed",
                number + 1
            ));
        }
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    // The last character outside whitespace, quotes and comments ('\n' at a line's start).
    let mut significant = '\n';
    for character in text.chars() {
        match character {
            '\n' => comment = false,
            _ if comment => {}
            c if quote == Some(c) && (c == '\'' || previous != '\\') => quote = None,
            _ if quote.is_some() => {}
            '#' if previous.is_whitespace() => comment = true,
            // A quote opens a scalar only where a scalar can begin: right after a line's start,
            // an indicator (`[`, `{`, `,`, `:`, `-`, `?`) or the space after one; inside a
            // plain scalar (`a 'b`) it is just a character.
            '"' | '\''
                if matches!(previous, ' ' | '\t' | '\n' | '[' | '{' | ',')
                    && matches!(significant, '\n' | '[' | '{' | ',' | ':' | '-' | '?') =>
            {
                quote = Some(character);
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "collections nest more than {MAX_NESTING} deep; not parsed"
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if character == '\n' {
            significant = '\n';
        } else if !character.is_whitespace() && !comment {
            significant = character;
        }
        previous = character;
    }
    Ok(())
}

fn parse_object(origin: &str, mut value: Value, observed: &mut Observed) {
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        observed.invalid.push(InvalidInput {
            origin: origin.to_string(),
            kind: "document".to_string(),
            object: None,
            reason: "not a Kubernetes object: apiVersion and kind are required".to_string(),
        });
        return;
    };
    let served = match api_version.split_once('/') {
        Some((group, version)) => {
            (group == GATEWAY_GROUP && SERVED_VERSIONS.contains(&version))
                || (group == policy::GROUP && version == policy::VERSION && kind == policy::KIND)
        }
        None => api_version == "v1" && kind == "Namespace",
    };
    if !served {
        return;
    }
    if !matches!(kind.as_str(), "GatewayClass" | "Namespace") {
        default_namespace(&mut value);
    }
    let object = object_name(&value);
    let inputs = &mut observed.inputs;
    let result = match kind.as_str() {
        "HTTPRoute" => decode(origin, value).map(|route| inputs.routes.push(route)),
        "GRPCRoute" => decode(origin, value).map(|route| inputs.grpc_routes.push(route)),
        "Gateway" => decode(origin, value).map(|gateway| inputs.gateways.push(gateway)),
        "GatewayClass" => decode(origin, value).map(|class| inputs.classes.push(class)),
        policy::KIND => decode(origin, value).map(|policy| inputs.auth_policies.push(policy)),
        "Namespace" => decode(origin, value).map(|namespace| inputs.namespaces.push(namespace)),
        _ => Ok(()),
    };
    if let Err(reason) = result {
        observed.invalid.push(InvalidInput {
            origin: origin.to_string(),
            kind,
            object,
            reason,
        });
    }
}

fn decode<T: DeserializeOwned>(origin: &str, value: Value) -> Result<Shared<T>, String> {
    if object_name(&value).is_none() {
        return Err("metadata.name is required".to_string());
    }
    check_object_size(&value)?;
    let object = serde_yaml_ng::from_value::<T>(value)
        .map_err(|error| format!("does not match the schema: {error}"))?;
    Ok(Arc::new(Sourced {
        origin: origin.to_string(),
        object,
    }))
}

/// Objects without `metadata.namespace` live in `default`, where `kubectl apply` would put them.
fn default_namespace(value: &mut Value) {
    if let Some(Value::Mapping(metadata)) = value.get_mut("metadata") {
        let key = Value::from("namespace");
        if !metadata.contains_key(&key) {
            metadata.insert(key, Value::from("default"));
        }
    }
}

/// `namespace/name` (or just `name` for cluster-scoped objects), when the metadata has a name.
fn object_name(value: &Value) -> Option<String> {
    let metadata = value.get("metadata")?;
    let name = metadata
        .get("name")?
        .as_str()
        .filter(|name| !name.is_empty())?;
    Some(match metadata.get("namespace").and_then(Value::as_str) {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    })
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: apps\nspec:\n  hostnames: [\"a.example.com\"]\n";

    #[test]
    fn deeply_nested_text_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let mut observed = Observed::default();
        parse("deep.yaml", &deep, &mut observed);
        assert_eq!(observed.invalid.len(), 1);
        assert_eq!(observed.invalid[0].origin, "deep.yaml");
        assert!(
            observed.invalid[0]
                .reason
                .contains("nest more than 64 deep"),
            "{}",
            observed.invalid[0].reason
        );
        let indented = format!("a:\n{}b: 1\n", " ".repeat(300));
        let mut observed = Observed::default();
        parse("indented.yaml", &indented, &mut observed);
        assert!(observed.invalid[0].reason.contains("indented 300 columns"));
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let hidden = "[".repeat(100);
        let text = format!(
            "{ROUTE}  # {hidden}\nmetadata2: \"{hidden}\"\nmetadata3: '{hidden}'\nnote: it's fine\n"
        );
        assert_eq!(check_nesting(&text), Ok(()));
        // An apostrophe inside a plain scalar does not hide what follows it.
        let sneaky = format!("note: don't\nx: {}{}\n", "[".repeat(70), "]".repeat(70));
        assert!(check_nesting(&sneaky).is_err());
        // Nor does one after a space inside a flow scalar.
        let flow = format!("x: [a 'b, {}{}]\n", "[".repeat(70), "]".repeat(70));
        assert!(check_nesting(&flow).is_err(), "{flow}");
        // A quoted flow item is still a quote.
        let quoted = format!("x: [a, '{}']\n", "[".repeat(70));
        assert_eq!(check_nesting(&quoted), Ok(()));
    }
}
