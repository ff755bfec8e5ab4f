//! The AWS SDK's HTTPS client (ACM PCA, STS, the Pod Identity agent): rustls on ring, the one
//! crypto stack the project links.

use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
