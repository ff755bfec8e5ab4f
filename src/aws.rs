//! The AWS SDK's HTTPS client (ACM PCA, VPC Lattice, STS, the Pod Identity agent): rustls on
//! ring, the one crypto stack the project links; and the controller's SDK configuration.

use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK configuration of the controller's AWS clients: credentials from the default chain,
/// `region` (else the SDK's own), `endpoint_url` (else the SDK's own, which honours
/// `AWS_ENDPOINT_URL`), at most `attempts` attempts of `attempt_timeout` each, so that an
/// endpoint that hangs is reported like one that refuses.
pub async fn sdk_config(
    region: Option<&str>,
    endpoint_url: Option<&str>,
    attempts: u32,
    attempt_timeout: std::time::Duration,
) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(attempt_timeout)
        .operation_timeout(attempt_timeout * attempts)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts));
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
