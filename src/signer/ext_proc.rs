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

use super::canonical;
use super::{Mutation, Overrides, Refusal, Signer};

const VIA: &str = "ext_proc";

/// Serves ext_proc on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    signer: Arc<Signer>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Envoy sends one small message per request: Nagle's algorithm would only add latency.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
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
        .serve_with_incoming_shutdown(listener.incoming(), shutdown.cancelled_owned())
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
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| Refusal::BadRequest(format!("Envoy sent no {name} header")))
    };
    let request = canonical::Request {
        method: find(":method")?,
        path: find(":path")?,
        authority: find(":authority")?,
        headers: &pairs,
    };
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
