//! What makes a fetched CA certificate trustworthy enough to serve: it parses, it is a CA
//! (basicConstraints `CA:TRUE`), and it is valid now; so does every certificate of its chain.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::pem::Pem;

/// The public facts of one certificate, for `/debug/trust` and the logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub fingerprint_sha256: String,
}

/// A CA certificate (and its chain) that passed validation, with the PEM to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidCa {
    pub certificate: CertificateInfo,
    pub chain: Vec<CertificateInfo>,
    /// The CA certificate then its chain, re-encoded as PEM.
    pub pem: String,
}

/// Why a fetched certificate was refused. The previous bundle stays served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCa {
    #[error("no PEM certificate in the {0}")]
    NoCertificate(&'static str),
    #[error("the {what} is not a valid PEM X.509 certificate: {reason}")]
    Unparseable { what: &'static str, reason: String },
    #[error("{subject} is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotACa { subject: String },
    #[error("{subject} expired at {not_after} (unix seconds)")]
    Expired { subject: String, not_after: i64 },
    #[error("{subject} is not valid before {not_before} (unix seconds)")]
    NotYetValid { subject: String, not_before: i64 },
}

/// Validates a `GetCertificateAuthorityCertificate` answer at `now`.
pub fn validate(
    certificate: &str,
    chain: Option<&str>,
    now: SystemTime,
) -> Result<ValidCa, InvalidCa> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    let mut pem = String::new();
    let mut ca = certificates(certificate, "certificate", now, &mut pem)?;
    if ca.len() != 1 {
        return Err(InvalidCa::Unparseable {
            what: "certificate",
            reason: format!("expected one certificate, found {}", ca.len()),
        });
    }
    let chain = match chain.filter(|chain| !chain.trim().is_empty()) {
        Some(chain) => certificates(chain, "certificate chain", now, &mut pem)?,
        None => Vec::new(),
    };
    Ok(ValidCa {
        certificate: ca.remove(0),
        chain,
        pem,
    })
}

fn certificates(
    text: &str,
    what: &'static str,
    now: i64,
    pem_out: &mut String,
) -> Result<Vec<CertificateInfo>, InvalidCa> {
    let mut found = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|error| InvalidCa::Unparseable {
            what,
            reason: error.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let certificate = block.parse_x509().map_err(|error| InvalidCa::Unparseable {
            what,
            reason: error.to_string(),
        })?;
        let info = CertificateInfo {
            subject: certificate.subject().to_string(),
            issuer: certificate.issuer().to_string(),
            serial: certificate.raw_serial_as_string(),
            not_before: certificate.validity().not_before.timestamp(),
            not_after: certificate.validity().not_after.timestamp(),
            fingerprint_sha256: hex::encode(Sha256::digest(&block.contents)),
        };
        if !certificate.is_ca() {
            return Err(InvalidCa::NotACa {
                subject: info.subject,
            });
        }
        if info.not_after <= now {
            return Err(InvalidCa::Expired {
                subject: info.subject,
                not_after: info.not_after,
            });
        }
        if info.not_before > now {
            return Err(InvalidCa::NotYetValid {
                subject: info.subject,
                not_before: info.not_before,
            });
        }
        push_pem(&block.contents, pem_out);
        found.push(info);
    }
    if found.is_empty() {
        return Err(InvalidCa::NoCertificate(what));
    }
    Ok(found)
}

/// Why a CA file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotCertificates {
    #[error(
        "it holds a private key (a PEM {0:?} block); a CA file must hold certificates only, and nothing of this one is served"
    )]
    PrivateKey(String),
    #[error("it holds no PEM certificate")]
    NoCertificate,
    #[error("it is not valid PEM: {0}")]
    Unreadable(String),
}

/// The `CERTIFICATE` blocks of a PEM file, re-encoded, and nothing else: comments, parameters
/// and public keys are dropped. A file holding any private key is refused whole, so a combined
/// certificate-and-key file never reaches a sidecar or a ConfigMap.
pub fn certificates_only(text: &str) -> Result<String, NotCertificates> {
    if let Some(label) = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .map(|rest| rest.trim_end_matches('-'))
        .find(|label| label.contains("PRIVATE KEY"))
    {
        return Err(NotCertificates::PrivateKey(label.to_string()));
    }
    let mut pem = String::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|error| NotCertificates::Unreadable(error.to_string()))?;
        if block.label == "CERTIFICATE" {
            push_pem(&block.contents, &mut pem);
        }
    }
    if pem.is_empty() {
        return Err(NotCertificates::NoCertificate);
    }
    Ok(pem)
}

/// Appends DER as a PEM `CERTIFICATE` block.
fn push_pem(der: &[u8], out: &mut String) {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
}

#[cfg(test)]
mod tests;
