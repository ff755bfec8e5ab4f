//! SDS secrets: trust bundles as validation contexts.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, secret,
};

use crate::model::TrustBundle;

/// A validation context holding the bundle's CA certificates.
pub fn trust_bundle(bundle: &TrustBundle) -> Secret {
    Secret {
        name: super::trust_secret_name(&bundle.name),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(Specifier::InlineString(bundle.pem.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    }
}
