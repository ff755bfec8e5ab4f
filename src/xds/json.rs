//! Envoy resources as proto3 JSON, the form Envoy's own config dump and YAML use: for the
//! admin config dump and the golden files. The descriptors are compiled by the build script
//! from the protos that `envoy-types` ships.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));
    DescriptorPool::decode(bytes.as_slice()).map_err(|error| error.to_string())
});

/// Why a resource could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The embedded descriptors did not load (a build problem).
    #[error("Envoy descriptors unavailable: {0}")]
    Descriptors(String),
    /// The type is not among the compiled Envoy protos.
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("cannot decode {type_url}: {source}")]
    Decode {
        type_url: String,
        source: prost::DecodeError,
    },
    #[error("cannot render {type_url}: {source}")]
    Render {
        type_url: String,
        source: serde_json::Error,
    },
}

/// Renders a packed resource as JSON; nested `Any` values are expanded with their `@type`.
pub fn any_to_json(any: &Any) -> Result<serde_json::Value, JsonError> {
    let pool = POOL
        .as_ref()
        .map_err(|error| JsonError::Descriptors(error.clone()))?;
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let descriptor = pool
        .get_message_by_name(name)
        .ok_or_else(|| JsonError::UnknownType(name.to_string()))?;
    let message = DynamicMessage::decode(descriptor, any.value.as_slice()).map_err(|source| {
        JsonError::Decode {
            type_url: any.type_url.clone(),
            source,
        }
    })?;
    let options = SerializeOptions::new()
        .skip_default_fields(true)
        .use_proto_field_name(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|source| JsonError::Render {
            type_url: any.type_url.clone(),
            source,
        })
}

/// Renders a typed message (packed first) as JSON.
pub fn message_to_json<T: prost::Message + prost::Name>(
    message: &T,
) -> Result<serde_json::Value, JsonError> {
    any_to_json(&Any {
        type_url: T::type_url(),
        value: message.encode_to_vec(),
    })
}
