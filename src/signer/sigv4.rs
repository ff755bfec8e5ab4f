//! SigV4 (`AWS4-HMAC-SHA256`) signatures, with the derived signing key cached.
//!
//! Deriving a signing key costs four HMACs; it depends only on the date, region, service and
//! secret key, so [`KeyCache`] keeps it (as a keyed HMAC state) and a request then costs one
//! SHA-256 of the canonical request and one HMAC of the string to sign.

use std::cell::RefCell;
use std::fmt;
use std::fmt::Write as _;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use hmac::Mac;
use sha2::{Digest, Sha256};

use super::canonical::{self, PathRules, Request, Scratch};
use super::key_cache::KeyCache;
use super::time::AmzDate;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash VPC Lattice requires: it does not sign bodies.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Where a signature is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// What the last line of the canonical request says about the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// `UNSIGNED-PAYLOAD`, also sent and signed as `x-amz-content-sha256` (VPC Lattice).
    Unsigned,
    /// A hex SHA-256 of the body; `header` adds it as `x-amz-content-sha256`.
    Hashed { sha256: &'a str, header: bool },
}

/// Choices that differ between services; VPC Lattice uses the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub payload: Payload<'a>,
    /// Whether `x-amz-security-token` is signed, or only added after signing.
    pub sign_session_token: bool,
    pub path: PathRules,
    /// Sign every header given, even those proxies may rewrite (`te`, `x-envoy-*`, …): what a
    /// verifier re-signing a caller's `SignedHeaders` needs. A signer leaves them out.
    pub every_header: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            payload: Payload::Unsigned,
            sign_session_token: true,
            path: PathRules::default(),
            every_header: false,
        }
    }
}

/// The headers a signature adds to a request, in the order they are set.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Signed")
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// The intermediate texts of one signature, for checking against reference vectors.
#[derive(Debug, PartialEq, Eq)]
pub struct Workings {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

thread_local! {
    /// The canonical request and its scratch lists, reused by every signature on a thread.
    static BUFFERS: RefCell<(Scratch, String)> = RefCell::default();
}

/// Signs requests with SigV4, reusing derived keys.
#[derive(Debug, Default)]
pub struct SigV4 {
    keys: KeyCache,
}

impl SigV4 {
    /// The headers that make `request` acceptable to `scope`'s service at `time`.
    pub fn sign(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        scope: Scope<'_>,
        time: SystemTime,
        options: &Options<'_>,
    ) -> Signed {
        let date = AmzDate::new(time);
        let token = credentials.session_token();
        let signer_headers = SignerHeaders::new(&date, token, options);
        let authorization = with_canonical(
            request,
            &signer_headers,
            options,
            |canonical_request, signed_names| {
                let signature = self.signature(credentials, scope, &date, canonical_request);
                let signature = std::str::from_utf8(&signature).unwrap_or_default();
                let mut authorization = String::with_capacity(160 + signed_names.len());
                let _ = write!(
                    authorization,
                    "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
                    credentials.access_key_id(),
                    date.date(),
                    scope.region,
                    scope.service,
                    signed_names,
                    signature,
                );
                authorization
            },
        );
        signer_headers.into_signed(authorization, token)
    }

    /// The canonical request, string to sign and signature, as the reference vectors give them.
    pub fn workings(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        scope: Scope<'_>,
        time: SystemTime,
        options: &Options<'_>,
    ) -> Workings {
        let date = AmzDate::new(time);
        let signer_headers = SignerHeaders::new(&date, credentials.session_token(), options);
        with_canonical(request, &signer_headers, options, |canonical_request, _| {
            let digest = hex::encode(Sha256::digest(canonical_request.as_bytes()));
            let signature = self.signature(credentials, scope, &date, canonical_request);
            Workings {
                canonical_request: canonical_request.to_string(),
                string_to_sign: string_to_sign(ALGORITHM, &date, scope, &digest).concat(),
                signature: String::from_utf8_lossy(&signature).into_owned(),
            }
        })
    }

    /// The hex HMAC of the string to sign, with the cached signing key.
    fn signature(
        &self,
        credentials: &Credentials,
        scope: Scope<'_>,
        date: &AmzDate,
        canonical_request: &str,
    ) -> [u8; 64] {
        let digest: [u8; 32] = Sha256::digest(canonical_request.as_bytes()).into();
        let digest = hex_array(&digest);
        let digest = std::str::from_utf8(&digest).unwrap_or_default();
        let mut mac = self
            .keys
            .mac(date.date(), scope, credentials.secret_access_key());
        for part in string_to_sign(ALGORITHM, date, scope, digest) {
            mac.update(part.as_bytes());
        }
        let signature: [u8; 32] = mac.finalize().into_bytes().into();
        hex_array(&signature)
    }
}

/// Writes the canonical request into this thread's reused buffer and passes it, with its
/// signed-header list (`host;x-amz-date;…`), to `then`.
pub(super) fn with_canonical<R>(
    request: &Request<'_>,
    signer_headers: &SignerHeaders<'_>,
    options: &Options<'_>,
    then: impl FnOnce(&str, &str) -> R,
) -> R {
    BUFFERS.with_borrow_mut(|(scratch, canonical_request)| {
        let (list, len) = signer_headers.list();
        let signed_names = canonical::write(
            request,
            &list[..len],
            options.payload.line(),
            options.path,
            options.every_header,
            scratch,
            canonical_request,
        );
        then(canonical_request, &canonical_request[signed_names])
    })
}

/// The string to sign, in the pieces that are fed to the HMAC one by one (or joined, to read).
/// SigV4A's scope has no region: pass an empty one.
pub(super) fn string_to_sign<'a>(
    algorithm: &'a str,
    date: &'a AmzDate,
    scope: Scope<'a>,
    digest: &'a str,
) -> [&'a str; 11] {
    let region_separator = if scope.region.is_empty() { "" } else { "/" };
    [
        algorithm,
        "\n",
        date.as_str(),
        "\n",
        date.date(),
        region_separator,
        scope.region,
        "/",
        scope.service,
        "/aws4_request\n",
        digest,
    ]
}

impl Payload<'_> {
    pub(super) fn line(&self) -> &str {
        match self {
            Payload::Unsigned => UNSIGNED_PAYLOAD,
            Payload::Hashed { sha256, .. } => sha256,
        }
    }
}

/// The headers the signer itself adds and signs.
pub(super) struct SignerHeaders<'a> {
    pub date: &'a AmzDate,
    pub content_sha256: Option<&'a str>,
    /// The session token, when it is signed.
    pub token: Option<&'a str>,
    /// SigV4A's `x-amz-region-set`.
    pub region_set: Option<&'a str>,
}

impl<'a> SignerHeaders<'a> {
    pub fn new(date: &'a AmzDate, token: Option<&'a str>, options: &Options<'a>) -> Self {
        let content_sha256 = match options.payload {
            Payload::Unsigned => Some(UNSIGNED_PAYLOAD),
            Payload::Hashed { sha256, header } => header.then_some(sha256),
        };
        SignerHeaders {
            date,
            content_sha256,
            token: token.filter(|_| options.sign_session_token),
            region_set: None,
        }
    }

    /// The headers as (name, value) pairs, on the stack: the first `.1` entries of `.0`.
    pub fn list(&self) -> ([(&'a str, &'a str); 4], usize) {
        let mut list = [("", ""); 4];
        let mut len = 0;
        let mut push = |pair| {
            list[len] = pair;
            len += 1;
        };
        push(("x-amz-date", self.date.as_str()));
        if let Some(payload) = self.content_sha256 {
            push(("x-amz-content-sha256", payload));
        }
        if let Some(token) = self.token {
            push(("x-amz-security-token", token));
        }
        if let Some(region_set) = self.region_set {
            push(("x-amz-region-set", region_set));
        }
        (list, len)
    }

    /// The headers to set on the request: `authorization` first, then the signer's own
    /// (the session token even when it is not signed).
    pub fn into_signed(self, authorization: String, token: Option<&str>) -> Signed {
        let mut headers = Vec::with_capacity(5);
        headers.push(("authorization", authorization));
        headers.push(("x-amz-date", self.date.as_str().to_string()));
        if let Some(payload) = self.content_sha256 {
            headers.push(("x-amz-content-sha256", payload.to_string()));
        }
        if let Some(region_set) = self.region_set {
            headers.push(("x-amz-region-set", region_set.to_string()));
        }
        if let Some(token) = token {
            headers.push(("x-amz-security-token", token.to_string()));
        }
        Signed { headers }
    }
}

/// Lowercase hex of a digest, on the stack.
fn hex_array(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0; 64];
    for (index, byte) in digest.iter().enumerate() {
        text[2 * index] = DIGITS[usize::from(byte >> 4)];
        text[2 * index + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    text
}
