//! SigV4 canonical requests: the exact bytes that the signer and VPC Lattice both hash.
//!
//! The rules follow the AWS "Create a canonical request for Signature Version 4" reference:
//! the path is normalized and URI-encoded a second time (every service but S3), query
//! parameters are decoded, re-encoded and sorted, header values are trimmed with runs of
//! whitespace collapsed, duplicate headers are joined with `,`, and `host` is the authority
//! without a default port.

use std::fmt::Write as _;
use std::ops::Range;

/// The parts of an HTTP request that a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query exactly as the application sent them (HTTP/2 `:path`).
    pub path: &'a str,
    /// `:authority`, signed as `host`.
    pub authority: &'a str,
    /// Every other header. Pseudo-headers, `host`, the headers the signer owns and the headers
    /// proxies rewrite are skipped here, so callers may pass everything they have.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Whether a header belongs to the signer: an application's own `authorization` or `x-amz-*`
/// header is removed, so that it cannot smuggle in a signature or a date of its own.
pub fn owned_by_signer(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || starts_with_ignoring_case(name, "x-amz-")
}

/// Whether `name` begins with the ASCII `prefix`, in any case. Compares bytes, so a name that
/// is not ASCII (which no valid header name is, but a caller may send) cannot split a
/// character.
fn starts_with_ignoring_case(name: &str, prefix: &str) -> bool {
    name.as_bytes()
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Whether a header is left out of the signature because something between the signer and
/// VPC Lattice may add, drop or rewrite it: Envoy's own headers, the forwarding headers, the
/// trace headers, and the hop-by-hop headers that HTTP/1.1 proxies never pass on.
pub fn left_unsigned(name: &str) -> bool {
    const PREFIXES: [&str; 2] = ["x-envoy-", "x-forwarded-"];
    const NAMES: [&str; 13] = [
        "x-amzn-trace-id",
        "traceparent",
        "tracestate",
        "baggage",
        "expect",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    PREFIXES
        .iter()
        .any(|prefix| starts_with_ignoring_case(name, prefix))
        || NAMES.iter().any(|known| name.eq_ignore_ascii_case(known))
}

/// How the path is canonicalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRules {
    /// Remove `.` and `..` segments and empty segments (every service but S3).
    pub normalize: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        Self { normalize: true }
    }
}

/// Reusable buffers, so that a signature allocates nothing once they have grown (a query
/// string still costs one allocation per parameter).
#[derive(Debug, Default)]
pub struct Scratch {
    headers: Vec<Header>,
    /// Re-encoded query names and values, as ranges of `query_text`.
    query: Vec<(Range<usize>, Range<usize>)>,
    query_text: String,
    segments: Vec<Range<usize>>,
}

/// Where a header to sign comes from.
#[derive(Clone, Copy, Debug)]
enum Header {
    Host,
    Request(usize),
    Signer(usize),
}

/// Writes the canonical request into `out` and returns the range of `out` holding the signed
/// header list (`host;x-amz-date;…`), which the `Authorization` header repeats.
///
/// `signer_headers` are the headers the signer adds itself (`x-amz-date`, …); `payload` is the
/// last line: a hex SHA-256 or `UNSIGNED-PAYLOAD`. `every_header`: sign even the headers a
/// signer leaves out ([`left_unsigned`]), as a verifier must when the caller listed them.
pub fn write(
    request: &Request<'_>,
    signer_headers: &[(&str, &str)],
    payload: &str,
    rules: PathRules,
    every_header: bool,
    scratch: &mut Scratch,
    out: &mut String,
) -> Range<usize> {
    out.clear();
    out.push_str(request.method);
    out.push('\n');
    let (path, query) = match request.path.split_once('?') {
        Some((path, query)) => (path, query),
        None => (request.path, ""),
    };
    write_path(path, rules, &mut scratch.segments, out);
    out.push('\n');
    write_query(query, &mut scratch.query, &mut scratch.query_text, out);
    out.push('\n');
    let headers = Headers {
        request,
        signer: signer_headers,
    };
    headers.collect(every_header, &mut scratch.headers);
    headers.write(&scratch.headers, out);
    out.push('\n');
    let start = out.len();
    headers.write_names(&scratch.headers, out);
    let signed = start..out.len();
    out.push('\n');
    out.push_str(payload);
    signed
}

/// The authority without the default port of either scheme: Lattice listens on both.
pub fn host(authority: &str) -> &str {
    authority
        .strip_suffix(":443")
        .or_else(|| authority.strip_suffix(":80"))
        .unwrap_or(authority)
}

fn write_path(path: &str, rules: PathRules, segments: &mut Vec<Range<usize>>, out: &mut String) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    if !rules.normalize {
        encode(path.as_bytes(), true, out);
        return;
    }
    segments.clear();
    let mut start = 0;
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(start..start + segment.len()),
        }
        start += segment.len() + 1;
    }
    if path.starts_with('/') {
        out.push('/');
    }
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        encode(&path.as_bytes()[segment.clone()], true, out);
    }
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    segments.clear();
}

/// Query parameters are decoded (`+` is a space, as form encoding has it), re-encoded with
/// only the unreserved characters left bare, and sorted by name, then value.
fn write_query(
    query: &str,
    pairs: &mut Vec<(Range<usize>, Range<usize>)>,
    text: &mut String,
    out: &mut String,
) {
    pairs.clear();
    text.clear();
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let name = reencode(name, text);
        let value = reencode(value, text);
        pairs.push((name, value));
    }
    let text = text.as_str();
    pairs.sort_unstable_by(|a, b| {
        (&text[a.0.clone()], &text[a.1.clone()]).cmp(&(&text[b.0.clone()], &text[b.1.clone()]))
    });
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(&text[name.clone()]);
        out.push('=');
        out.push_str(&text[value.clone()]);
    }
}

/// Appends the canonical form of one query component to `text`, returning where it is.
fn reencode(component: &str, text: &mut String) -> Range<usize> {
    let start = text.len();
    let bytes = component.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = match bytes[index] {
            b'+' => b' ',
            b'%' => match bytes.get(index + 1..index + 3) {
                Some(&[high, low]) if hex_pair(high, low).is_some() => {
                    index += 2;
                    hex_pair(high, low).unwrap_or(b'%')
                }
                _ => b'%',
            },
            byte => byte,
        };
        encode(&[byte], false, text);
        index += 1;
    }
    start..text.len()
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    Some(digit(high)? << 4 | digit(low)?)
}

/// Percent-encodes every byte but the unreserved characters (and `/`, in a path).
fn encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    for &byte in bytes {
        let bare = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/');
        if bare {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// The headers of one request, looked up by [`Header`] so that the scratch list borrows nothing.
struct Headers<'r, 'a> {
    request: &'r Request<'a>,
    signer: &'r [(&'r str, &'r str)],
}

impl Headers<'_, '_> {
    fn get(&self, header: Header) -> (&str, &str) {
        match header {
            Header::Host => ("host", host(self.request.authority)),
            Header::Request(index) => self.request.headers[index],
            Header::Signer(index) => self.signer[index],
        }
    }

    fn collect(&self, every_header: bool, list: &mut Vec<Header>) {
        list.clear();
        list.push(Header::Host);
        for (index, &(name, _)) in self.request.headers.iter().enumerate() {
            let skipped = name.starts_with(':')
                || name.eq_ignore_ascii_case("host")
                || owned_by_signer(name)
                || (!every_header && left_unsigned(name));
            if !skipped {
                list.push(Header::Request(index));
            }
        }
        list.extend((0..self.signer.len()).map(Header::Signer));
        // Stable: repeated headers keep the order in which they were sent.
        list.sort_by(|a, b| {
            let name = |header| {
                self.get(header)
                    .0
                    .bytes()
                    .map(|byte| byte.to_ascii_lowercase())
            };
            name(*a).cmp(name(*b))
        });
    }

    fn write(&self, list: &[Header], out: &mut String) {
        let mut previous: Option<&str> = None;
        for &header in list {
            let (name, value) = self.get(header);
            if previous.is_some_and(|previous| previous.eq_ignore_ascii_case(name)) {
                out.pop();
                out.push(',');
            } else {
                push_lowercase(name, out);
                out.push(':');
            }
            for (index, word) in value.split_ascii_whitespace().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
            out.push('\n');
            previous = Some(name);
        }
    }

    fn write_names(&self, list: &[Header], out: &mut String) {
        let mut previous: Option<&str> = None;
        for &header in list {
            let (name, _) = self.get(header);
            if previous.is_some_and(|previous| previous.eq_ignore_ascii_case(name)) {
                continue;
            }
            if previous.is_some() {
                out.push(';');
            }
            push_lowercase(name, out);
            previous = Some(name);
        }
    }
}

fn push_lowercase(name: &str, out: &mut String) {
    out.extend(name.chars().map(|c| c.to_ascii_lowercase()));
}

#[cfg(test)]
mod tests;
