//! SigV4A (`AWS4-ECDSA-P256-SHA256`): the same canonical request, scoped to a region set and
//! signed with an ECDSA P-256 key derived from the secret access key.
//!
//! The key is derived as AWS SDKs do it: NIST SP 800-108 counter-mode KDF with HMAC-SHA256 over
//! the label `AWS4-ECDSA-P256-SHA256` and the context `access key id || counter`, taking the
//! first candidate `c <= n - 2` and using `c + 1` as the private scalar. The derivation is
//! cached per key pair.

use std::fmt;
use std::sync::RwLock;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::canonical::Request;
use super::sigv4::{
    Options, Scope, Signed, SignerHeaders, Workings, string_to_sign, with_canonical,
};
use super::time::AmzDate;

pub const ALGORITHM: &str = "AWS4-ECDSA-P256-SHA256";

/// The order of P-256 minus two, big-endian: the largest acceptable KDF output.
const ORDER_MINUS_TWO: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x4f,
];

/// A secret access key for which no counter gave a valid scalar (never seen in practice).
#[derive(Debug, thiserror::Error)]
#[error("could not derive a SigV4A key from these credentials")]
pub struct DerivationError;

struct CachedKey {
    access_key_id: Box<str>,
    secret: Box<str>,
    key: SigningKey,
}

/// Signs requests with SigV4A, reusing derived keys.
#[derive(Default)]
pub struct SigV4a {
    key: RwLock<Option<CachedKey>>,
}

impl fmt::Debug for SigV4a {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4a").finish_non_exhaustive()
    }
}

impl SigV4a {
    /// The headers that make `request` acceptable in `scope.region` (a region set such as `*`).
    pub fn sign(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        scope: Scope<'_>,
        time: SystemTime,
        options: &Options<'_>,
    ) -> Result<Signed, DerivationError> {
        let date = AmzDate::new(time);
        let token = credentials.session_token();
        let mut signer_headers = SignerHeaders::new(&date, token, options);
        signer_headers.region_set = Some(scope.region);
        let (workings, signed_names) = self.work(
            request,
            credentials,
            scope.service,
            &date,
            &signer_headers,
            options,
        )?;
        let authorization = format!(
            "{ALGORITHM} Credential={}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
            credentials.access_key_id(),
            date.date(),
            scope.service,
            signed_names,
            workings.signature,
        );
        Ok(signer_headers.into_signed(authorization, token))
    }

    /// The canonical request, string to sign and (DER, hex) signature.
    pub fn workings(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        scope: Scope<'_>,
        time: SystemTime,
        options: &Options<'_>,
    ) -> Result<Workings, DerivationError> {
        let date = AmzDate::new(time);
        let mut signer_headers = SignerHeaders::new(&date, credentials.session_token(), options);
        signer_headers.region_set = Some(scope.region);
        self.work(
            request,
            credentials,
            scope.service,
            &date,
            &signer_headers,
            options,
        )
        .map(|(workings, _)| workings)
    }

    /// Signs the canonical request; also returns its signed-header list.
    fn work(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        service: &str,
        date: &AmzDate,
        signer_headers: &SignerHeaders<'_>,
        options: &Options<'_>,
    ) -> Result<(Workings, String), DerivationError> {
        let key = self.key(credentials)?;
        // The credential scope of SigV4A has no region: the region set is a signed header.
        let scope = Scope {
            region: "",
            service,
        };
        Ok(with_canonical(
            request,
            signer_headers,
            options,
            |canonical_request, signed_names| {
                let digest = hex::encode(Sha256::digest(canonical_request.as_bytes()));
                let string_to_sign = string_to_sign(ALGORITHM, date, scope, &digest).concat();
                let signature: Signature = key.sign(string_to_sign.as_bytes());
                let workings = Workings {
                    canonical_request: canonical_request.to_string(),
                    string_to_sign,
                    signature: hex::encode(signature.to_der().as_bytes()),
                };
                (workings, signed_names.to_string())
            },
        ))
    }

    /// The public half of the key derived from `credentials`.
    pub fn verifying_key(
        &self,
        credentials: &Credentials,
    ) -> Result<VerifyingKey, DerivationError> {
        Ok(*self.key(credentials)?.verifying_key())
    }

    fn key(&self, credentials: &Credentials) -> Result<SigningKey, DerivationError> {
        let (id, secret) = (credentials.access_key_id(), credentials.secret_access_key());
        if let Ok(cached) = self.key.read()
            && let Some(cached) = cached.as_ref()
            && *cached.access_key_id == *id
            && *cached.secret == *secret
        {
            return Ok(cached.key.clone());
        }
        let key = derive(id, secret)?;
        if let Ok(mut cached) = self.key.write() {
            *cached = Some(CachedKey {
                access_key_id: id.into(),
                secret: secret.into(),
                key: key.clone(),
            });
        }
        Ok(key)
    }
}

fn derive(access_key_id: &str, secret: &str) -> Result<SigningKey, DerivationError> {
    let mut input_key = Vec::with_capacity(5 + secret.len());
    input_key.extend_from_slice(b"AWS4A");
    input_key.extend_from_slice(secret.as_bytes());
    for counter in 1..=254u8 {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&input_key).map_err(|_| DerivationError)?;
        mac.update(&1u32.to_be_bytes());
        mac.update(ALGORITHM.as_bytes());
        mac.update(&[0]);
        mac.update(access_key_id.as_bytes());
        mac.update(&[counter]);
        mac.update(&256u32.to_be_bytes());
        let candidate: [u8; 32] = mac.finalize().into_bytes().into();
        if candidate <= ORDER_MINUS_TWO {
            return SigningKey::from_slice(&plus_one(candidate)).map_err(|_| DerivationError);
        }
    }
    Err(DerivationError)
}

/// `value + 1`, big-endian; never overflows for values up to `n - 2`.
fn plus_one(mut value: [u8; 32]) -> [u8; 32] {
    for byte in value.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    value
}
