//! Reads Gateway API objects (and the AWS controller's IAMAuthPolicies) out of multi-document YAML text. Pure: no file system access, so
//! the same code serves the watched directory and the golden tests.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::{InvalidInput, Observed, Sourced, policy};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const SERVED_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Parses every document in `text`; `origin` names the file in reports.
///
/// Objects of other kinds or API groups are ignored. A document that is not YAML, or a known
/// kind that does not match its schema, is reported and skipped.
pub fn parse(origin: &str, text: &str, observed: &mut Observed) {
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
    let served = api_version.split_once('/').is_some_and(|(group, version)| {
        (group == GATEWAY_GROUP && SERVED_VERSIONS.contains(&version))
            || (group == policy::GROUP && version == policy::VERSION && kind == policy::KIND)
    });
    if !served {
        return;
    }
    if kind != "GatewayClass" {
        default_namespace(&mut value);
    }
    let object = object_name(&value);
    let inputs = &mut observed.inputs;
    let result = match kind.as_str() {
        "HTTPRoute" => decode(origin, value).map(|route| inputs.routes.push(route)),
        "Gateway" => decode(origin, value).map(|gateway| inputs.gateways.push(gateway)),
        "GatewayClass" => decode(origin, value).map(|class| inputs.classes.push(class)),
        policy::KIND => decode(origin, value).map(|policy| inputs.auth_policies.push(policy)),
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

fn decode<T: DeserializeOwned>(origin: &str, value: Value) -> Result<Sourced<T>, String> {
    if object_name(&value).is_none() {
        return Err("metadata.name is required".to_string());
    }
    let object = serde_yaml_ng::from_value::<T>(value)
        .map_err(|error| format!("does not match the schema: {error}"))?;
    Ok(Sourced {
        origin: origin.to_string(),
        object,
    })
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
