//! SigV4 checked as VPC Lattice checks it: the `Authorization` header is parsed, the caller
//! looked up by access key, the date held to the allowed clock skew, and the signature computed
//! again over the request as it arrived (the signed headers only, `UNSIGNED-PAYLOAD`).
//! Failures carry Lattice's error names.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::identities::Identity;
use crate::signer::canonical;
use crate::signer::sigv4::{ALGORITHM, Options, Payload, Scope, SigV4, UNSIGNED_PAYLOAD};
use crate::signer::time::parse_amz_date;

/// The service name Lattice signatures are scoped to.
pub const SERVICE: &str = "vpc-lattice-svcs";

/// Why a signature is refused, with the exception name Lattice uses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is malformed or incomplete.
    #[error("IncompleteSignatureException: {0}")]
    Incomplete(String),
    /// The signature is well formed but wrong, expired or from an unknown key.
    #[error("InvalidSignatureException: {0}")]
    Invalid(String),
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    let incomplete = |what: &str| {
        SignatureError::Incomplete(format!("{what} in the Authorization header: {value}"))
    };
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| {
            SignatureError::Incomplete(format!(
                "Authorization header requires the {ALGORITHM} algorithm (SigV4A is not emulated): {value}"
            ))
        })?
        .trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, field) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete("a malformed field"))?;
        match name {
            "Credential" => credential = Some(field),
            "SignedHeaders" => signed_headers = Some(field),
            "Signature" => signature = Some(field),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential is missing"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders is missing"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature is missing"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(incomplete(
            "Credential is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// A request as it arrived.
pub struct Received<'a> {
    pub method: &'a str,
    /// Path and query, exactly as sent.
    pub path: &'a str,
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
}

impl Received<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The identity that signed `request`; `Ok(None)` for an unsigned (anonymous) request.
pub fn verify<'a>(
    request: &Received<'_>,
    identities: &'a [Identity],
    region: &str,
    now: SystemTime,
    skew: Duration,
) -> Result<Option<&'a Identity>, SignatureError> {
    let Some(value) = request.header("authorization") else {
        return Ok(None);
    };
    let authorization = parse_authorization(value)?;
    for required in ["host", "x-amz-date"] {
        if !authorization.signed_headers.contains(&required) {
            return Err(SignatureError::Incomplete(format!(
                "'{required}' must be a SignedHeader in the Authorization header"
            )));
        }
    }
    for name in &authorization.signed_headers {
        if request.header(name).is_none() {
            return Err(SignatureError::Incomplete(format!(
                "'{name}' is named as a SignedHeader, but it does not exist in the HTTP request"
            )));
        }
    }
    let identity = identities
        .iter()
        .find(|identity| identity.access_key_id == authorization.access_key)
        .ok_or_else(|| {
            SignatureError::Invalid(
                "The security token included in the request is invalid".to_string(),
            )
        })?;
    if authorization.service != SERVICE {
        return Err(SignatureError::Invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'"
        )));
    }
    if authorization.region != region {
        return Err(SignatureError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'",
            authorization.region
        )));
    }
    match (
        &identity.session_token,
        request.header("x-amz-security-token"),
    ) {
        (Some(expected), Some(sent)) if expected == sent => {}
        (None, None) => {}
        _ => {
            return Err(SignatureError::Invalid(
                "The security token included in the request is invalid".to_string(),
            ));
        }
    }
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SignatureError::Incomplete(format!("x-amz-date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if !amz_date.starts_with(authorization.date) {
        return Err(SignatureError::Invalid(
            "Date in Credential scope does not match YYYYMMDD from x-amz-date".to_string(),
        ));
    }
    let off = now
        .duration_since(signed_at)
        .or_else(|early| Ok::<_, ()>(early.duration()))
        .unwrap_or_default();
    if off > skew {
        return Err(SignatureError::Invalid(format!(
            "Signature expired: {amz_date} is more than {} seconds from the current time",
            skew.as_secs()
        )));
    }

    // Sign the request again, over the headers the caller signed.
    let authority = request.header("host").unwrap_or_default();
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            name != "host"
                && !canonical::owned_by_signer(name)
                && authorization.signed_headers.contains(&name.as_str())
        })
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let payload = request
        .header("x-amz-content-sha256")
        .unwrap_or(UNSIGNED_PAYLOAD);
    let options = Options {
        payload: if payload == UNSIGNED_PAYLOAD {
            Payload::Unsigned
        } else {
            Payload::Hashed {
                sha256: payload,
                header: authorization
                    .signed_headers
                    .contains(&"x-amz-content-sha256"),
            }
        },
        sign_session_token: authorization
            .signed_headers
            .contains(&"x-amz-security-token"),
        // Exactly what the caller listed: Envoy's own filter signs `te` on gRPC calls.
        every_header: true,
        ..Options::default()
    };
    let credentials = Credentials::new(
        &identity.access_key_id,
        &identity.secret_access_key,
        identity.session_token.clone(),
        None,
        "lattice-emulator",
    );
    let expected = SigV4::default().sign(
        &canonical::Request {
            method: request.method,
            path: request.path,
            authority,
            headers: &headers,
        },
        &credentials,
        Scope {
            region,
            service: SERVICE,
        },
        signed_at,
        &options,
    );
    let expected_authorization = expected
        .headers
        .iter()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let expected_signature = expected_authorization
        .rsplit("Signature=")
        .next()
        .unwrap_or_default();
    if expected_signature != authorization.signature {
        let missing: Vec<&str> = (authorization.signed_headers.iter())
            .filter(|name| **name != "host" && request.header(name).is_none())
            .copied()
            .collect();
        tracing::debug!(
            signed = ?authorization.signed_headers,
            ?missing,
            ?headers,
            authority,
            method = request.method,
            path = request.path,
            "signature mismatch"
        );
        return Err(SignatureError::Invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".to_string(),
        ));
    }
    Ok(Some(identity))
}
