//! `envoy.service.status.v3.ClientStatusDiscoveryService` on the admin gRPC port: per node,
//! each resource's status from the control plane's side, read from the same registry as
//! `proxy-status`, so that standard xDS tooling can read it.
//!
//! A resource is ACKED (SYNCED) when the node accepted the version it holds, NACKED (ERROR,
//! with Envoy's error) when a rejection stands and the node still runs an older version or
//! none, STALE while a response awaits its ACK, and REQUESTED (NOT_SENT) when the node
//! subscribed to a name it was never sent.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryService;
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::xds::registry::{ClientState, Registry, TypeRecord};
use crate::xds::wire::Packed;

/// Answers CSDS requests from the registry.
#[derive(Clone, Debug)]
pub struct Csds {
    registry: Arc<Registry>,
}

impl Csds {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The status of every node a matcher selects (every node when there are none).
    pub fn answer(&self, request: &ClientStatusRequest) -> Result<ClientStatusResponse, Status> {
        let matchers: Vec<&StringMatcher> = request
            .node_matchers
            .iter()
            .map(node_id_matcher)
            .collect::<Result<_, _>>()?;
        for matcher in &matchers {
            check_matcher(matcher)?;
        }
        let select = |node_id: &str| {
            matchers.is_empty() || matchers.iter().any(|matcher| matches(matcher, node_id))
        };
        let contents = !request.exclude_resource_contents;
        let config = self
            .registry
            .clients(select)
            .iter()
            .map(|client| client_config(client, contents))
            .collect();
        Ok(ClientStatusResponse { config })
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = Responses;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let csds = self.clone();
        let responses = request
            .into_inner()
            .map(move |request| csds.answer(&request?));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.answer(request.get_ref()).map(Response::new)
    }
}

/// The node id matcher of `matcher`; matching on metadata is refused rather than ignored.
fn node_id_matcher(matcher: &NodeMatcher) -> Result<&StringMatcher, Status> {
    if !matcher.node_metadatas.is_empty() {
        return Err(Status::unimplemented(
            "node_metadatas matchers are not supported; match on node_id",
        ));
    }
    matcher
        .node_id
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("a node matcher needs node_id"))
}

fn check_matcher(matcher: &StringMatcher) -> Result<(), Status> {
    match &matcher.match_pattern {
        Some(
            MatchPattern::Exact(_)
            | MatchPattern::Prefix(_)
            | MatchPattern::Suffix(_)
            | MatchPattern::Contains(_),
        ) => Ok(()),
        Some(MatchPattern::SafeRegex(_) | MatchPattern::Custom(_)) => Err(Status::unimplemented(
            "only exact, prefix, suffix and contains node_id matchers are supported",
        )),
        None => Err(Status::invalid_argument(
            "the node_id matcher has no pattern",
        )),
    }
}

fn matches(matcher: &StringMatcher, node_id: &str) -> bool {
    // Copies only when case is to be ignored.
    let fold = |text| fold_case(text, matcher.ignore_case);
    let node_id = fold(node_id);
    match &matcher.match_pattern {
        Some(MatchPattern::Exact(exact)) => node_id == fold(exact),
        Some(MatchPattern::Prefix(prefix)) => node_id.starts_with(&*fold(prefix)),
        Some(MatchPattern::Suffix(suffix)) => node_id.ends_with(&*fold(suffix)),
        Some(MatchPattern::Contains(part)) => node_id.contains(&*fold(part)),
        _ => false,
    }
}

fn fold_case(text: &str, ignore_case: bool) -> std::borrow::Cow<'_, str> {
    if ignore_case {
        text.to_lowercase().into()
    } else {
        text.into()
    }
}

fn client_config(client: &ClientState, contents: bool) -> ClientConfig {
    let record = &client.record;
    let node = Node {
        id: record.node_id.clone(),
        cluster: record.cluster.clone(),
        metadata: record.metadata.clone(),
        ..Default::default()
    };
    let generic_xds_configs = record
        .types
        .iter()
        .flat_map(|status| resources(client, status, contents))
        .collect();
    ClientConfig {
        node: Some(node),
        generic_xds_configs,
        ..Default::default()
    }
}

/// One entry per resource of `status`'s type the node holds or asked for, by name. Versions
/// are what the node itself reports: the response's `version_info` over SotW, each
/// resource's own version over Delta.
fn resources(client: &ClientState, status: &TypeRecord, contents: bool) -> Vec<GenericXdsConfig> {
    let type_url = status.type_url.as_str();
    let sotw = client.record.protocol == "sotw";
    let accepted = client.accepted.get(type_url);
    let held = client
        .served
        .get(type_url)
        .map(|holdings| holdings.held())
        .unwrap_or_default();
    let mut configs = Vec::with_capacity(held.len());
    for (name, resource) in &held {
        let running = accepted.and_then(|accepted| accepted.version(name));
        let mut config = GenericXdsConfig {
            type_url: type_url.to_string(),
            name: (*name).to_string(),
            xds_config: (resource.packed.as_ref())
                .filter(|_| contents)
                .map(Packed::to_any),
            ..Default::default()
        };
        let version = |resource_version: Option<&str>, type_version: &str| match sotw {
            true => type_version.to_string(),
            false => resource_version.unwrap_or_default().to_string(),
        };
        if running == Some(resource.version.as_str()) {
            config.version_info = version(running, &status.acked_version);
            config.set_client_status(ClientResourceStatus::Acked);
            config.set_config_status(ConfigStatus::Synced);
        } else if let Some(rejection) = &status.rejected {
            // It still runs what it accepted last, if anything.
            config.version_info = match running {
                Some(_) => version(running, &status.acked_version),
                None => String::new(),
            };
            config.set_client_status(ClientResourceStatus::Nacked);
            config.set_config_status(ConfigStatus::Error);
            config.error_state = Some(UpdateFailureState {
                details: rejection.error.clone(),
                version_info: rejection.version.clone(),
                ..Default::default()
            });
        } else {
            config.version_info = version(Some(&resource.version), &status.sent_version);
            config.set_config_status(ConfigStatus::Stale);
        }
        configs.push(config);
    }
    let never_sent = status
        .subscribed
        .iter()
        .flat_map(|names| names.iter())
        .filter(|name| &***name != "*" && !held.contains_key(&***name));
    for name in never_sent {
        let mut config = GenericXdsConfig {
            type_url: type_url.to_string(),
            name: name.to_string(),
            ..Default::default()
        };
        config.set_client_status(ClientResourceStatus::Requested);
        config.set_config_status(ConfigStatus::NotSent);
        configs.push(config);
    }
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs
}
