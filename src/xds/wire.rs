//! Discovery responses that share their resources with the snapshot, down to the bytes sent.
//!
//! Every resource is packed and encoded once, when its snapshot is built ([`Packed`]), and
//! every stream that sends it passes those same bytes to the connection: a response holds
//! references, and [`Encoder`] cuts it into the buffers of its HTTP/2 frames without copying
//! any resource of [`SHARED_MIN`] bytes or more. The fields around the resources, and the
//! small resources, are written into buffers of at most [`CHUNK`] bytes, made one at a time as
//! the connection takes them, so a stream's own unsent bytes stay small whatever the size of
//! the response.
//!
//! The messages decode exactly as `envoy.service.discovery.v3.DiscoveryResponse` and
//! `DeltaDiscoveryResponse`: the fields this server sets, with the resources last (a protobuf
//! parser takes fields in any order), so Envoy and any generated client read them unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use prost::{Message, Name};

/// Resources at least this large go to the connection as the snapshot holds them; smaller
/// ones are copied next to their neighbours, which costs less than a frame of their own.
pub const SHARED_MIN: usize = 1024;

/// The most bytes a stream writes into one buffer of its own.
pub const CHUNK: usize = 16 * 1024;

/// A resource packed as `google.protobuf.Any` and encoded once; clones share the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed {
    /// The encoded `Any`: `type_url` (1), then `value` (2).
    bytes: Bytes,
    /// Where the resource's own encoding (the `Any`'s value) starts.
    value_at: usize,
}

impl Packed {
    /// Packs `message` as an `Any` of its type URL.
    pub fn new<T: Message + Name>(message: &T) -> Self {
        let type_url = T::type_url();
        let value_len = message.encoded_len();
        let mut buf = Vec::with_capacity(string_len(1, &type_url) + bytes_len(2, value_len));
        string(1, &type_url, &mut buf);
        if value_len > 0 {
            nested(2, value_len, &mut buf);
        }
        let value_at = buf.len();
        message.encode_raw(&mut buf);
        Self {
            bytes: Bytes::from(buf),
            value_at,
        }
    }

    /// Packs a message of type `T` from its encoding without one repeated message field
    /// (`head`), and that field's items, each already encoded (`bytes` finds an item's
    /// encoding): they are copied into the packed bytes once, not decoded. Each item's bytes
    /// are then those within the packed ones, so that nothing is held twice.
    pub fn spliced<T: Name, I>(
        head: &[u8],
        tag: u32,
        items: &mut [I],
        bytes: impl Fn(&mut I) -> &mut Bytes,
    ) -> Self {
        let type_url = T::type_url();
        let items_len: usize = (items.iter_mut())
            .map(|item| bytes_len(tag, bytes(item).len()))
            .sum();
        let value_len = head.len() + items_len;
        let mut buf = Vec::with_capacity(string_len(1, &type_url) + bytes_len(2, value_len));
        string(1, &type_url, &mut buf);
        if value_len > 0 {
            nested(2, value_len, &mut buf);
        }
        let value_at = buf.len();
        buf.extend_from_slice(head);
        for item in items.iter_mut() {
            let item = bytes(item);
            nested(tag, item.len(), &mut buf);
            buf.extend_from_slice(item);
        }
        let packed = Bytes::from(buf);
        let mut at = value_at + head.len();
        for item in items {
            let item = bytes(item);
            let len = item.len();
            at += bytes_len(tag, len) - len;
            *item = packed.slice(at..at + len);
            at += len;
        }
        Self {
            bytes: packed,
            value_at,
        }
    }

    /// The resource's own encoding.
    pub fn value(&self) -> &[u8] {
        &self.bytes[self.value_at..]
    }

    /// The encoded `Any`, shared.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded `Any`'s length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the `Any` encodes to nothing (no type URL, no value).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `Any` itself, for the admin API and the config dump.
    pub fn to_any(&self) -> Any {
        Any::decode(self.bytes.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// What [`Encoder`] needs of a response: its length, the fields that are not resources, and
/// each resource's field header followed by its packed bytes.
pub trait Response {
    /// The encoded message's length.
    fn encoded_len(&self) -> usize;

    /// Writes every field but the resources.
    fn write_head(&self, buf: &mut BytesMut);

    /// How many resources the message carries.
    fn resource_count(&self) -> usize;

    /// Writes what precedes resource `index`'s packed bytes and returns them.
    fn write_resource(&self, index: usize, buf: &mut BytesMut) -> &Packed;
}

/// A state-of-the-world response: `version_info` (1), `type_url` (4), `nonce` (5), then
/// `resources` (2).
#[derive(Clone, Debug, Default)]
pub struct DiscoveryResponse {
    pub version_info: String,
    pub resources: Vec<Packed>,
    pub type_url: String,
    pub nonce: String,
}

/// One resource of an incremental response (`envoy.service.discovery.v3.Resource`):
/// `version` (1), `name` (3), then `resource` (2).
#[derive(Clone, Debug)]
pub struct DeltaResource {
    pub name: String,
    pub version: String,
    pub resource: Packed,
}

/// An incremental response: `system_version_info` (1), `type_url` (4), `nonce` (5),
/// `removed_resources` (6), then `resources` (2).
#[derive(Clone, Debug, Default)]
pub struct DeltaDiscoveryResponse {
    pub system_version_info: String,
    pub resources: Vec<DeltaResource>,
    pub type_url: String,
    pub nonce: String,
    pub removed_resources: Vec<String>,
}

impl Response for DiscoveryResponse {
    fn encoded_len(&self) -> usize {
        let resources: usize = (self.resources.iter())
            .map(|packed| bytes_len(2, packed.len()))
            .sum();
        string_len(1, &self.version_info)
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
            + resources
    }

    fn write_head(&self, buf: &mut BytesMut) {
        string(1, &self.version_info, buf);
        string(4, &self.type_url, buf);
        string(5, &self.nonce, buf);
    }

    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    fn write_resource(&self, index: usize, buf: &mut BytesMut) -> &Packed {
        let packed = &self.resources[index];
        nested(2, packed.len(), buf);
        packed
    }
}

impl DeltaResource {
    /// The length of the `Resource` message.
    fn len(&self) -> usize {
        string_len(1, &self.version) + string_len(3, &self.name) + bytes_len(2, self.resource.len())
    }
}

impl Response for DeltaDiscoveryResponse {
    fn encoded_len(&self) -> usize {
        let resources: usize = (self.resources.iter())
            .map(|resource| bytes_len(2, resource.len()))
            .sum();
        let removed: usize = (self.removed_resources.iter())
            .map(|name| bytes_len(6, name.len()))
            .sum();
        string_len(1, &self.system_version_info)
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
            + removed
            + resources
    }

    fn write_head(&self, buf: &mut BytesMut) {
        string(1, &self.system_version_info, buf);
        string(4, &self.type_url, buf);
        string(5, &self.nonce, buf);
        for name in &self.removed_resources {
            nested(6, name.len(), buf);
            buf.put_slice(name.as_bytes());
        }
    }

    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    fn write_resource(&self, index: usize, buf: &mut BytesMut) -> &Packed {
        let resource = &self.resources[index];
        nested(2, resource.len(), buf);
        string(1, &resource.version, buf);
        string(3, &resource.name, buf);
        nested(2, resource.resource.len(), buf);
        &resource.resource
    }
}

/// Cuts a response into the buffers of its gRPC message (length-prefixed, uncompressed), one
/// at a time.
pub struct Encoder<T> {
    response: T,
    /// Whether the prefix and the fields before the resources were handed out.
    started: bool,
    /// The next resource to write.
    next: usize,
    /// Bytes of the message not yet handed out, the 5-byte prefix included.
    left: usize,
    /// A shared resource to hand out after the buffer before it.
    shared: Option<Bytes>,
}

impl<T: Response> Encoder<T> {
    pub fn new(response: T) -> Self {
        let left = 5 + response.encoded_len();
        Self {
            response,
            started: false,
            next: 0,
            left,
            shared: None,
        }
    }

    /// The next buffer of the message, `None` once all of it was handed out.
    pub fn next_buffer(&mut self) -> Option<Bytes> {
        if let Some(shared) = self.shared.take() {
            self.left = self.left.saturating_sub(shared.len());
            return Some(shared);
        }
        let count = self.response.resource_count();
        if self.started && self.next == count {
            return None;
        }
        // Room for a chunk and the small resource that may end it.
        let mut buf = BytesMut::with_capacity(self.left.min(CHUNK + SHARED_MIN + 128));
        if !self.started {
            self.started = true;
            let length = self.left - 5;
            buf.put_u8(0);
            buf.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
            self.response.write_head(&mut buf);
        }
        while self.next < count && buf.len() < CHUNK {
            let packed = self.response.write_resource(self.next, &mut buf);
            self.next += 1;
            if packed.len() >= SHARED_MIN {
                self.shared = Some(packed.bytes().clone());
                break;
            }
            buf.put_slice(packed.bytes());
        }
        self.left = self.left.saturating_sub(buf.len());
        Some(buf.freeze())
    }
}

/// Field key plus length prefix of a length-delimited field.
fn nested(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// The length of a length-delimited field of `len` bytes.
fn bytes_len(tag: u32, len: usize) -> usize {
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
        bytes_len(tag, value.len())
    }
}

#[cfg(test)]
mod tests;
