//! The `envoy.service.ext_proc.v3.ExternalProcessor` service: request headers in, signing
//! header mutations (or an immediate error response) out.
//!
//! The controller configures the filter to send request headers only, so bodies never reach
//! the signer and are never buffered. Any other message is answered with "continue, unchanged"
//! so that a misconfigured filter cannot stall a request.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpHeaders, ImmediateResponse,
    ProcessingRequest, ProcessingResponse, TrailersResponse, processing_request,
    processing_response,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::batched::Batched;
use super::{Mutation, Overrides, Refusal, Signer};

const VIA: &str = "ext_proc";

/// Serves ext_proc on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    signer: Arc<Signer>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Envoy sends one small message per request: Nagle's algorithm would only add latency.
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|stream| stream.map(Batched::new));
    tonic::transport::Server::builder()
        .add_service(ExternalProcessorServer::new(Processor { signer }))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// Serves ext_proc on a Unix socket that only the proxy's uid may use, until `shutdown`.
pub async fn serve_unix(
    listener: super::socket::PeerListener,
    signer: Arc<Signer>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ExternalProcessorServer::new(Processor { signer }))
        .serve_with_incoming_shutdown(
            listener.incoming().map(|stream| stream.map(Batched::new)),
            shutdown.cancelled_owned(),
        )
        .await
}

struct Processor {
    signer: Arc<Signer>,
}

type Responses = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Processor {
    type ProcessStream = Responses;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let metadata = request.metadata();
        let overrides = Overrides::from_headers(|name| metadata.get(name)?.to_str().ok())
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let signer = Arc::clone(&self.signer);
        let responses = request.into_inner().map(move |message| {
            let message = message?;
            Ok(answer(&signer, &overrides, message))
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

fn answer(
    signer: &Signer,
    overrides: &Overrides,
    message: ProcessingRequest,
) -> ProcessingResponse {
    use processing_request::Request as In;
    use processing_response::Response as Out;
    let response = match message.request {
        Some(In::RequestHeaders(headers)) => match sign(signer, overrides, &headers) {
            Ok(mutation) => Out::RequestHeaders(HeadersResponse {
                response: Some(CommonResponse {
                    header_mutation: Some(header_mutation(mutation)),
                    ..Default::default()
                }),
            }),
            Err(refusal) => Out::ImmediateResponse(refuse(&refusal)),
        },
        Some(In::ResponseHeaders(_)) => Out::ResponseHeaders(HeadersResponse::default()),
        Some(In::RequestBody(_)) => Out::RequestBody(BodyResponse::default()),
        Some(In::ResponseBody(_)) => Out::ResponseBody(BodyResponse::default()),
        Some(In::RequestTrailers(_)) => Out::RequestTrailers(TrailersResponse::default()),
        Some(In::ResponseTrailers(_)) | None => Out::ResponseTrailers(TrailersResponse::default()),
    };
    ProcessingResponse {
        response: Some(response),
        ..Default::default()
    }
}

fn sign(
    signer: &Signer,
    overrides: &Overrides,
    headers: &HttpHeaders,
) -> Result<Mutation, Refusal> {
    let map = headers
        .headers
        .as_ref()
        .map(|map| map.headers.as_slice())
        .unwrap_or_default();
    let mut pairs = Vec::with_capacity(map.len());
    for header in map {
        pairs.push((header.key.as_str(), value(header)?));
    }
    let request = super::envoy_request(&pairs)?;
    signer.sign(&request, overrides, VIA)
}

/// A header's value: Envoy sends `raw_value` bytes, older versions the `value` string.
fn value(header: &HeaderValue) -> Result<&str, Refusal> {
    if header.raw_value.is_empty() {
        return Ok(&header.value);
    }
    std::str::from_utf8(&header.raw_value).map_err(|_| {
        Refusal::BadRequest(format!("the value of header {} is not UTF-8", header.key))
    })
}

fn header_mutation(mutation: Mutation) -> HeaderMutation {
    let set_headers = mutation
        .set
        .headers
        .into_iter()
        .map(|(name, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: name.to_string(),
                raw_value: value.into_bytes(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..Default::default()
        })
        .collect();
    HeaderMutation {
        set_headers,
        remove_headers: mutation.remove,
    }
}

fn refuse(refusal: &Refusal) -> ImmediateResponse {
    let code = match refusal.status() {
        400 => StatusCode::BadRequest,
        403 => StatusCode::Forbidden,
        500 => StatusCode::InternalServerError,
        _ => StatusCode::ServiceUnavailable,
    };
    let content_type = HeaderValueOption {
        header: Some(HeaderValue {
            key: "content-type".to_string(),
            raw_value: b"text/plain".to_vec(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        ..Default::default()
    };
    ImmediateResponse {
        status: Some(HttpStatus { code: code.into() }),
        headers: Some(HeaderMutation {
            set_headers: vec![content_type],
            remove_headers: Vec::new(),
        }),
        body: refusal.body().into_bytes(),
        details: format!("lattice_xds_signer_{}", refusal.reason()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::HeaderMap;
    use proptest::prelude::*;

    use super::*;

    /// A header as Envoy may send it: the value as `raw_value` bytes (any, UTF-8 or not) or as
    /// the older `value` string.
    fn header() -> impl Strategy<Value = HeaderValue> {
        let key = prop::sample::select(vec![
            ":method".to_string(),
            ":path".to_string(),
            ":authority".to_string(),
            "authorization".to_string(),
            "x-amz-date".to_string(),
            "content-type".to_string(),
        ])
        .boxed()
        .prop_union("\\PC{0,16}".boxed());
        (
            key,
            prop::collection::vec(any::<u8>(), 0..40),
            "\\PC{0,40}",
            any::<bool>(),
        )
            .prop_map(|(key, raw, text, as_raw)| HeaderValue {
                key,
                raw_value: if as_raw { raw } else { Vec::new() },
                value: if as_raw { String::new() } else { text },
            })
    }

    proptest! {
        // `PROPTEST_CASES` sets the number of cases for the longer run (`docs/properties.md`).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        /// Whatever headers Envoy sends, the answer either signs the request (it sets an
        /// AWS authorization) or ends it with an error status: never "continue" unsigned.
        #[test]
        fn every_request_headers_message_is_signed_or_refused(
            headers in prop::collection::vec(header(), 0..10),
        ) {
            let signer = super::super::tests::signer(Some("eu-west-1"));
            let message = ProcessingRequest {
                request: Some(processing_request::Request::RequestHeaders(HttpHeaders {
                    headers: Some(HeaderMap { headers }),
                    ..Default::default()
                })),
                ..Default::default()
            };
            match answer(&signer, &Overrides::default(), message).response {
                Some(processing_response::Response::RequestHeaders(continued)) => {
                    let set = continued
                        .response
                        .and_then(|common| common.header_mutation)
                        .map(|mutation| mutation.set_headers)
                        .unwrap_or_default();
                    let authorization = set.iter().filter_map(|option| option.header.as_ref()).find(|header| header.key == "authorization");
                    prop_assert!(
                        authorization.is_some_and(|header| header.raw_value.starts_with(b"AWS4-")),
                        "continued without a signature: {set:?}"
                    );
                }
                Some(processing_response::Response::ImmediateResponse(refused)) => {
                    let code = refused.status.map_or(0, |status| status.code);
                    prop_assert!(code >= 400, "refused with status {code}");
                }
                other => prop_assert!(false, "unexpected answer {other:?}"),
            }
        }
    }
}
