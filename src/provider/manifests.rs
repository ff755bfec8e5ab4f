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
/// kind that does not match its schema, is reported and skipped. A field the schema does not
/// have (a misspelt `hostname:` for `hostnames:`) is reported as a warning with its line, and
/// the object is read without it, as the API server would prune it. Text nested deeper than any
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
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(value) => documents.push(value),
            Err(error) => {
                observed.invalid.push(InvalidInput {
                    origin: format!("{origin}#{}", index + 1),
                    kind: "document".to_string(),
                    object: None,
                    reason: format!("not valid YAML: {error}"),
                });
                // The parser cannot find the next document boundary after a syntax error.
                break;
            }
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let starts = document_starts(&lines);
    for (index, value) in documents.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        // The document's lines, when its start can be told from the text.
        let at = (starts.len() > index).then(|| {
            let end = starts.get(index + 1).copied().unwrap_or(lines.len());
            (starts[index], &lines[starts[index]..end])
        });
        let document = Document {
            origin: format!("{origin}#{}", index + 1),
            file: origin,
            lines: at,
        };
        parse_object(&document, value, observed);
    }
}

/// Where a document was read: its place in the file for reports, and its lines (with the index
/// of the first) for the line of a field.
struct Document<'a> {
    origin: String,
    file: &'a str,
    lines: Option<(usize, &'a [&'a str])>,
}

impl Document<'_> {
    /// `file:line` of the field at `path` (`spec.rules.0.matches`), or the document's origin
    /// when the line cannot be found.
    fn place(&self, path: &str) -> String {
        let line = self
            .lines
            .and_then(|(first, lines)| Some(first + line_of(lines, path)? + 1));
        match line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.origin.clone(),
        }
    }
}

/// The index of the first line of each document: a `---` line starts one, except before the
/// first document's content.
fn document_starts(lines: &[&str]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut content = false;
    for (number, line) in lines.iter().enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker && content {
            starts.push(number);
        } else if marker {
            starts[0] = number;
        }
        let trimmed = line.trim_start();
        if !marker && !trimmed.is_empty() && !trimmed.starts_with('#') {
            content = true;
        }
    }
    starts
}

/// The index of the line among `lines` where the key at `path` is written: each key of the path
/// in turn, searched from the line of the one before (sequence indices are passed over).
fn line_of(lines: &[&str], path: &str) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for key in path.split('.').filter(|key| key.parse::<usize>().is_err()) {
        let at = from
            + lines[from..]
                .iter()
                .position(|line| writes_key(line, key))?;
        found = Some(at);
        from = at + 1;
    }
    found
}

/// Whether `line` is `key:` (in a block mapping or a sequence item, quoted or not).
fn writes_key(line: &str, key: &str) -> bool {
    let text = line.trim_start();
    let text = text.strip_prefix("- ").map_or(text, str::trim_start);
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|written| {
            text.strip_prefix(written.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
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

fn parse_object(document: &Document<'_>, mut value: Value, observed: &mut Observed) {
    let origin = document.origin.as_str();
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
    let mut unknown = Vec::new();
    let inputs = &mut observed.inputs;
    let result = match kind.as_str() {
        "HTTPRoute" => decode(origin, value, &mut unknown).map(|route| inputs.routes.push(route)),
        "GRPCRoute" => {
            decode(origin, value, &mut unknown).map(|route| inputs.grpc_routes.push(route))
        }
        "Gateway" => {
            decode(origin, value, &mut unknown).map(|gateway| inputs.gateways.push(gateway))
        }
        "GatewayClass" => {
            decode(origin, value, &mut unknown).map(|class| inputs.classes.push(class))
        }
        policy::KIND => {
            decode(origin, value, &mut unknown).map(|policy| inputs.auth_policies.push(policy))
        }
        "Namespace" => {
            decode(origin, value, &mut unknown).map(|namespace| inputs.namespaces.push(namespace))
        }
        _ => Ok(()),
    };
    match result {
        Ok(()) => {
            for path in unknown {
                observed.warnings.push(InvalidInput {
                    origin: document.place(&path),
                    kind: kind.clone(),
                    object: object.clone(),
                    reason: format!(
                        "unknown field {path}, ignored ({kind} {api_version} has no such field)"
                    ),
                });
            }
        }
        Err(reason) => observed.invalid.push(InvalidInput {
            origin: origin.to_string(),
            kind,
            object,
            reason,
        }),
    }
}

/// The object in `value`, with the path of every field its schema does not have put in
/// `unknown`.
fn decode<T: DeserializeOwned>(
    origin: &str,
    value: Value,
    unknown: &mut Vec<String>,
) -> Result<Shared<T>, String> {
    if object_name(&value).is_none() {
        return Err("metadata.name is required".to_string());
    }
    check_object_size(&value)?;
    let object = serde_ignored::deserialize(value, |path| {
        // `?` stands for an optional value; apiVersion and kind are read before.
        let path: Vec<String> = (path.to_string().split('.'))
            .filter(|segment| *segment != "?")
            .map(str::to_string)
            .collect();
        if !matches!(path.as_slice(), [top] if top == "apiVersion" || top == "kind") {
            unknown.push(path.join("."));
        }
    })
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
