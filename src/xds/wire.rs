//! Discovery responses that borrow their resources from the snapshot.
//!
//! Every resource is packed once, when its snapshot is built, and shared by every stream: a
//! response holds only references (`Arc<Any>`) and is written straight from them into the
//! gRPC frame. The messages encode exactly as `envoy.service.discovery.v3.DiscoveryResponse`
//! and `DeltaDiscoveryResponse` do (the fields this server sets, in tag order), so Envoy and
//! any generated client decode them unchanged. The server only sends them; decoding skips every field.

use std::sync::Arc;

use bytes::{Buf, BufMut};
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};
use prost::{DecodeError, Message};

/// A state-of-the-world response: `version_info` (1), `resources` (2), `type_url` (4),
/// `nonce` (5).
#[derive(Clone, Debug, Default)]
pub struct DiscoveryResponse {
    pub version_info: String,
    pub resources: Vec<Arc<Any>>,
    pub type_url: String,
    pub nonce: String,
}

/// One resource of an incremental response (`envoy.service.discovery.v3.Resource`):
/// `version` (1), `resource` (2), `name` (3).
#[derive(Clone, Debug, Default)]
pub struct DeltaResource {
    pub name: String,
    pub version: String,
    pub resource: Arc<Any>,
}

/// An incremental response: `system_version_info` (1), `resources` (2), `type_url` (4),
/// `nonce` (5), `removed_resources` (6).
#[derive(Clone, Debug, Default)]
pub struct DeltaDiscoveryResponse {
    pub system_version_info: String,
    pub resources: Vec<DeltaResource>,
    pub type_url: String,
    pub nonce: String,
    pub removed_resources: Vec<String>,
}

/// The decoding half of `Message` for a response that only leaves the server: every field
/// read into it is skipped.
macro_rules! only_sent {
    () => {
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), DecodeError> {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }

        fn clear(&mut self) {
            *self = Self::default();
        }
    };
}

impl Message for DiscoveryResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        string(1, &self.version_info, buf);
        for any in &self.resources {
            nested(2, any_len(any), buf);
            encode_any(any, buf);
        }
        string(4, &self.type_url, buf);
        string(5, &self.nonce, buf);
    }

    only_sent!();

    fn encoded_len(&self) -> usize {
        let resources: usize = self
            .resources
            .iter()
            .map(|any| nested_len(2, any_len(any)))
            .sum();
        string_len(1, &self.version_info)
            + resources
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
    }
}

impl DeltaResource {
    fn len(&self) -> usize {
        string_len(1, &self.version)
            + nested_len(2, any_len(&self.resource))
            + string_len(3, &self.name)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        string(1, &self.version, buf);
        nested(2, any_len(&self.resource), buf);
        encode_any(&self.resource, buf);
        string(3, &self.name, buf);
    }
}

impl Message for DeltaDiscoveryResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        string(1, &self.system_version_info, buf);
        for resource in &self.resources {
            nested(2, resource.len(), buf);
            resource.encode(buf);
        }
        string(4, &self.type_url, buf);
        string(5, &self.nonce, buf);
        for name in &self.removed_resources {
            encode_key(6, WireType::LengthDelimited, buf);
            encode_varint(name.len() as u64, buf);
            buf.put_slice(name.as_bytes());
        }
    }

    only_sent!();

    fn encoded_len(&self) -> usize {
        let resources: usize = self
            .resources
            .iter()
            .map(|resource| nested_len(2, resource.len()))
            .sum();
        let removed: usize = self
            .removed_resources
            .iter()
            .map(|name| nested_len(6, name.len()))
            .sum();
        string_len(1, &self.system_version_info)
            + resources
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
            + removed
    }
}

/// Field key plus length prefix of a length-delimited field.
fn nested(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn nested_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A proto3 string field; the empty string is the default and is not written.
fn string(tag: u32, value: &str, buf: &mut impl BufMut) {
    if !value.is_empty() {
        nested(tag, value.len(), buf);
        buf.put_slice(value.as_bytes());
    }
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        nested_len(tag, value.len())
    }
}

fn any_len(any: &Any) -> usize {
    any.encoded_len()
}

fn encode_any(any: &Any, buf: &mut impl BufMut) {
    any.encode_raw(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3 as generated;

    fn any(value: &[u8]) -> Arc<Any> {
        Arc::new(Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_string(),
            value: value.to_vec(),
        })
    }

    #[test]
    fn a_state_of_the_world_response_decodes_as_the_generated_message() {
        let response = DiscoveryResponse {
            version_info: "7".to_string(),
            resources: vec![any(b"\x0a\x01a"), any(b"")],
            type_url: "t".to_string(),
            nonce: "3".to_string(),
        };
        let bytes = response.encode_to_vec();
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = generated::DiscoveryResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.version_info, "7");
        assert_eq!(decoded.type_url, "t");
        assert_eq!(decoded.nonce, "3");
        let values: Vec<&[u8]> = decoded
            .resources
            .iter()
            .map(|a| a.value.as_slice())
            .collect();
        assert_eq!(values, [b"\x0a\x01a".as_slice(), b""]);
    }

    #[test]
    fn a_delta_response_decodes_as_the_generated_message() {
        let response = DeltaDiscoveryResponse {
            system_version_info: "9".to_string(),
            resources: vec![DeltaResource {
                name: "egress".to_string(),
                version: "abc".to_string(),
                resource: any(b"\x0a\x06egress"),
            }],
            type_url: "t".to_string(),
            nonce: "1".to_string(),
            removed_resources: vec!["gone".to_string(), String::new()],
        };
        let bytes = response.encode_to_vec();
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = generated::DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.system_version_info, "9");
        assert_eq!(decoded.removed_resources, ["gone", ""]);
        let resource = &decoded.resources[0];
        assert_eq!(
            (resource.name.as_str(), resource.version.as_str()),
            ("egress", "abc")
        );
        assert_eq!(resource.resource.as_ref().unwrap().value, b"\x0a\x06egress");
    }
}
