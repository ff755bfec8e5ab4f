//! Bounds on what one ADS client can make the controller hold or do, so that a misbehaving or
//! hostile neighbour costs O(1) and is told why it was refused.

use std::time::Duration;

use tonic::Status;

/// Per-stream bounds, from the controller's `--xds-max-*` and `--xds-write-timeout` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Resource names one stream may subscribe to, over every type.
    pub max_subscriptions: usize,
    /// Bytes of one resource name (or of a version a reconnecting client claims).
    pub max_name_bytes: usize,
    /// Bytes of every name one stream holds, over every type: its subscriptions, and the names
    /// and versions a reconnecting client claims to hold.
    pub max_names_bytes: usize,
    /// Bytes of a node id.
    pub max_node_id_bytes: usize,
    /// Bytes of a node's metadata, encoded.
    pub max_node_metadata_bytes: usize,
    /// Bytes of one request, encoded; a larger one ends the stream.
    pub max_request_bytes: usize,
    /// Bytes of a NACK's error detail kept and logged; the rest is cut.
    pub max_error_detail_bytes: usize,
    /// How long a stream may leave a response unread before it is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_subscriptions: 1024,
            max_name_bytes: 1024,
            max_names_bytes: 256 * 1024,
            max_node_id_bytes: 512,
            max_node_metadata_bytes: 16 * 1024,
            max_request_bytes: 4 * 1024 * 1024,
            max_error_detail_bytes: 2048,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The names a stream would hold after a request: how many, their bytes in all, and the
/// longest one the request brings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameUse {
    pub count: usize,
    pub bytes: usize,
    pub longest: usize,
}

impl Limits {
    /// Why a stream may not hold the names of `usage`: the metric's reason and the status the
    /// stream ends with.
    pub fn refuse_names(&self, usage: NameUse) -> Option<(&'static str, Status)> {
        if usage.longest > self.max_name_bytes {
            let status = Status::resource_exhausted(format!(
                "a resource name or version of {} bytes, more than the {} allowed (--xds-max-name-bytes)",
                usage.longest, self.max_name_bytes
            ));
            return Some(("name_too_long", status));
        }
        if usage.count > self.max_subscriptions {
            let status = Status::resource_exhausted(format!(
                "the stream subscribes to {} names, more than the {} allowed (--xds-max-subscriptions)",
                usage.count, self.max_subscriptions
            ));
            return Some(("too_many_subscriptions", status));
        }
        if usage.bytes > self.max_names_bytes {
            let status = Status::resource_exhausted(format!(
                "the stream's resource names take {} bytes, more than the {} allowed (--xds-max-names-bytes)",
                usage.bytes, self.max_names_bytes
            ));
            return Some(("names_too_large", status));
        }
        None
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("abcdef", 3), "abc… (3 bytes cut)");
        // "é" is two bytes: a cut in its middle moves back before it.
        assert_eq!(truncated("aé", 2), "a… (2 bytes cut)");
    }
}
