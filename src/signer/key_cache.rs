//! Derived SigV4 signing keys. Deriving one costs four HMACs and depends only on the date,
//! region, service and secret key, so the cache keeps the result as a keyed HMAC state that
//! each signature clones.

use std::fmt;
use std::sync::RwLock;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::sigv4::Scope;

/// How many (date, region, service, key) entries the cache keeps.
const CACHED_KEYS: usize = 16;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// Derived signing keys, keyed by (date, region, service, secret key).
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<Vec<CachedKey>>,
}

struct CachedKey {
    date: [u8; 8],
    region: Box<str>,
    service: Box<str>,
    secret: Box<str>,
    mac: HmacSha256,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .entries
            .read()
            .map(|entries| entries.len())
            .unwrap_or_default();
        f.debug_struct("KeyCache").field("entries", &len).finish()
    }
}

impl KeyCache {
    /// An HMAC keyed with the signing key, ready for the string to sign.
    pub(super) fn mac(&self, date: &str, scope: Scope<'_>, secret: &str) -> HmacSha256 {
        let matches = |entry: &CachedKey| {
            entry.date == date.as_bytes()
                && *entry.region == *scope.region
                && *entry.service == *scope.service
                && *entry.secret == *secret
        };
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.iter().find(|entry| matches(entry))
        {
            return entry.mac.clone();
        }
        let mac = derive(date, scope, secret);
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= CACHED_KEYS {
                entries.remove(0);
            }
            let mut key_date = [0; 8];
            key_date.copy_from_slice(&date.as_bytes()[..8]);
            entries.push(CachedKey {
                date: key_date,
                region: scope.region.into(),
                service: scope.service.into(),
                secret: secret.into(),
                mac: mac.clone(),
            });
        }
        mac
    }
}

fn derive(date: &str, scope: Scope<'_>, secret: &str) -> HmacSha256 {
    let step = |key: &[u8], data: &str| -> [u8; 32] {
        let mut mac = keyed(key);
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().into()
    };
    let mut secret_key = String::with_capacity(4 + secret.len());
    secret_key.push_str("AWS4");
    secret_key.push_str(secret);
    let key = step(secret_key.as_bytes(), date);
    let key = step(&key, scope.region);
    let key = step(&key, scope.service);
    let key = step(&key, "aws4_request");
    keyed(&key)
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}
