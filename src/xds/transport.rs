//! The ADS endpoints at the HTTP/2 level: requests are read with tonic's `Streaming`; every
//! response is written as a gRPC message of its own, handed to the connection a buffer at a
//! time ([`Encoder`]): the resources as the snapshot holds them, shared by every stream, the
//! rest in small buffers of the stream's own. The stream ends with its status in the trailers.
//!
//! tonic's own response encoder keeps a buffer as large as the largest message it has written
//! for as long as the stream lives. An ADS stream lives as long as its sidecar and carries the
//! whole route table: at 10,000 destinations that is 2 MB per idle stream, 2 GB for 1,000
//! sidecars. Here an idle stream holds no response bytes at all, and a push of the route table
//! to 1,000 streams holds one copy of it, however slowly the proxies read.
//!
//! How much of a response waits in the connection is bounded by hyper: it takes the next
//! buffer only while the stream's queued bytes are under its send buffer (400 KiB), so at
//! most that much of a stream's own bytes waits, and a proxy that reads nothing for the
//! write timeout is closed (`stream.rs`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::Stream;
use http_body_util::StreamBody;
use hyper::body::Frame;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::server::AdsServer;
use super::stream::Outgoing;
use super::wire::{Encoder, Response};

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const STATE_OF_THE_WORLD: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const INCREMENTAL: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The Aggregated Discovery Service as a gRPC service of the tonic server.
#[derive(Clone, Debug)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub fn new(server: AdsServer) -> Self {
        Self { server }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let server = self.server.clone();
        Box::pin(async move {
            if let Some(encoding) = request.headers().get("grpc-encoding")
                && encoding != "identity"
            {
                let status = Status::unimplemented("compressed requests are not accepted");
                return Ok(status.into_http());
            }
            let path = request.uri().path();
            if path != STATE_OF_THE_WORLD && path != INCREMENTAL {
                let status = Status::new(Code::Unimplemented, format!("no method {path}"));
                return Ok(status.into_http());
            }
            let peer = (request.extensions())
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|address| address.ip());
            let identity = match server.authenticate(request.headers(), peer).await {
                Ok(identity) => identity,
                Err(refusal) => return Ok(refusal.status.into_http()),
            };
            let limit = Some(server.max_request_bytes());
            let response = if request.uri().path() == STATE_OF_THE_WORLD {
                let requests = requests::<DiscoveryRequest>(request, limit);
                respond(server.state_of_the_world(requests, identity))
            } else {
                let requests = requests::<DeltaDiscoveryRequest>(request, limit);
                respond(server.incremental(requests, identity))
            };
            Ok(response)
        })
    }
}

/// The request messages of a stream, each at most `limit` bytes.
fn requests<T: Message + Default + Send + 'static>(
    request: http::Request<Body>,
    limit: Option<usize>,
) -> Streaming<T> {
    let decoder = tonic_prost::ProstCodec::<(), T>::default().decoder();
    Streaming::new_request(decoder, request.into_body(), None, limit)
}

/// The response: headers now, then a gRPC message per response, then the status.
fn respond<T: Response + Send + Unpin + 'static>(outgoing: Outgoing<T>) -> http::Response<Body> {
    let frames = Frames {
        outgoing,
        writing: None,
        done: false,
    };
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream's responses as HTTP/2 frames: each response's buffers, one at a time, as the
/// connection takes them.
struct Frames<T> {
    outgoing: Outgoing<T>,
    /// The response being written.
    writing: Option<Encoder<T>>,
    done: bool,
}

impl<T: Response + Unpin> Stream for Frames<T> {
    type Item = Result<Frame<Bytes>, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(buffer) = self.writing.as_mut().and_then(Encoder::next_buffer) {
                return Poll::Ready(Some(Ok(Frame::data(buffer))));
            }
            self.writing = None;
            if self.done {
                return Poll::Ready(None);
            }
            let next = ready!(Pin::new(&mut self.outgoing).poll_next(cx));
            match next {
                Some(Ok(response)) => self.writing = Some(Encoder::new(response)),
                Some(Err(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(trailers(&status))));
                }
                None => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(trailers(&Status::ok("")))));
                }
            }
        }
    }
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(Code::Internal as i32),
        );
    }
    Frame::trailers(headers)
}
