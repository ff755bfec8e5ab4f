//! `lattice-xds emulate-lattice`: a local stand-in for the VPC Lattice data plane, for the demo
//! and the tests. A development tool, not a production component.
//!
//! It serves the services the controller's manifests describe (HTTPRoutes with their
//! hostnames and backends, Gateways, IAMAuthPolicies), or those the VPC Lattice API lists for a
//! VPC (in moto: names, listeners, auth types and auth policies), and knows the callers of a
//! file. Per request it terminates TLS with the custom domain's certificate, checks the SigV4
//! signature as Lattice does, evaluates the service network's and the service's auth policies,
//! and either answers 403 with Lattice's `AccessDeniedException` text or forwards the request
//! to the service's backend and relays the answer unchanged. A TLS connection to a TLS
//! passthrough service is relayed by its server name, untouched. It can also answer DNS for
//! the names it serves and play the EKS Pod Identity agent for the callers it knows.

mod api;
pub mod dns;
pub mod faults;
pub mod identities;
mod passthrough;
pub mod pod_identity;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::https::ServingCertificate;
use crate::model::{ObjectRef, PolicyLevel, RouteKind, Settings};
use crate::policy::{INVOKE, Policy, Verdict, evaluate_lattice};
use crate::provider::discovery::DiscoverySettings;
use crate::provider::{Inputs, file, lattice};
use faults::{Fault, Faults};
use identities::Identity;
use verify::{Received, SignatureError};

/// Everything `emulate-lattice` needs.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub manifests: Vec<PathBuf>,
    /// Where the VPC Lattice API's services are read from, when they are.
    pub api: Option<DiscoverySettings>,
    pub identities: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub listen: SocketAddr,
    /// Where each route backend (`namespace/name` or `name`) or API service (its name)
    /// answers: a base URL.
    pub backends: BTreeMap<String, String>,
    pub region: String,
    pub account: String,
    pub dns_listen: Option<SocketAddr>,
    pub dns_answer: IpAddr,
    pub pod_identity_listen: Option<SocketAddr>,
    pub clock_skew: Duration,
    /// The faults a service answers with, by host name.
    pub faults: BTreeMap<String, Faults>,
}

/// One Lattice service: where it forwards, and the policies that guard it.
#[derive(Debug)]
struct Service {
    /// What it was made from, for logs and errors: `route apps/x` or `service NAME (ARN)`.
    source: String,
    /// Its ARN, the prefix of the resource every request names.
    arn: String,
    backend: Option<String>,
    /// A GRPCRoute's service: its backend is reached over HTTP/2 in clear text (h2c).
    grpc: bool,
    /// A TLS passthrough listener: a connection naming the service (SNI) is relayed to the
    /// backend untouched, neither terminated nor authorized.
    passthrough: bool,
    network_policy: Option<Policy>,
    service_policy: Option<Policy>,
}

/// The served services by host name.
type Table = BTreeMap<String, Arc<Service>>;

struct Emulator {
    services: watch::Receiver<Arc<Table>>,
    identities: Vec<Identity>,
    region: String,
    clock_skew: Duration,
    /// The port services are served on: `vpc-lattice-svcs:Port` in their auth policies.
    port: u16,
    faults: BTreeMap<String, Faulty>,
    /// The attempts seen of each request, by its `x-request-id`.
    attempts: Mutex<HashMap<String, u32>>,
}

/// A service told to fail, and its count of requests (the turn of its targets).
struct Faulty {
    faults: Faults,
    requests: AtomicU64,
    started: Instant,
}

/// The header every answer to a request with an `x-request-id` carries: how many times the
/// emulator has seen that request, retries included.
pub const ATTEMPT_HEADER: &str = "x-lattice-emulator-attempt";

/// How many request ids the attempt count keeps before it starts again.
const ATTEMPTS_KEPT: usize = 100_000;

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: EmulatorConfig) -> anyhow::Result<()> {
    let identities = identities::load(&config.identities)?;
    let routes = services(&config)?;
    anyhow::ensure!(
        !routes.is_empty() || config.api.is_some(),
        "the manifests describe no VPC Lattice service, and no VPC Lattice API is read (--vpc-id, --service-network)"
    );
    let certificate = Arc::new(ServingCertificate::default());
    let chain = std::fs::read_to_string(&config.tls_cert)
        .with_context(|| format!("cannot read {}", config.tls_cert.display()))?;
    let key = std::fs::read_to_string(&config.tls_key)
        .with_context(|| format!("cannot read {}", config.tls_key.display()))?;
    certificate.set_pem(&chain, &key)?;

    let shutdown = CancellationToken::new();
    let (services, names) = match config.api.clone() {
        None => {
            log_services(&routes);
            let names = Arc::new(routes.keys().cloned().collect());
            (watch::channel(Arc::new(routes)).1, watch::channel(names).1)
        }
        Some(api) => {
            let backends = Arc::new(config.backends.clone());
            let mut followed = api::follow(api, routes, backends, shutdown.clone()).await?;
            let names = watch::channel(Arc::new(BTreeSet::new()));
            let (services, names_sender) = (followed.clone(), names.0);
            tokio::spawn(async move {
                loop {
                    let table = Arc::clone(&followed.borrow_and_update());
                    log_services(&table);
                    names_sender.send_replace(Arc::new(table.keys().cloned().collect()));
                    if followed.changed().await.is_err() {
                        return;
                    }
                }
            });
            (services, names.1)
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if let Some(address) = config.dns_listen {
        let socket = tokio::net::UdpSocket::bind(address)
            .await
            .with_context(|| format!("cannot listen for DNS on {address}"))?;
        tokio::spawn(dns::serve(
            socket,
            names,
            config.dns_answer,
            shutdown.clone(),
        ));
        tracing::info!(%address, answer = %config.dns_answer, "answering DNS for the served names");
    }
    let identities = Arc::new(identities);
    if let Some(address) = config.pod_identity_listen {
        let agent = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for the Pod Identity agent on {address}"))?;
        let router = pod_identity::router(Arc::clone(&identities));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(agent, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        tracing::info!(%address, "serving the Pod Identity agent");
    }
    let emulator = Arc::new(Emulator {
        services: services.clone(),
        identities: identities.as_ref().clone(),
        region: config.region.clone(),
        clock_skew: config.clock_skew,
        port: config.listen.port(),
        faults: (config.faults.iter())
            .map(|(host, faults)| {
                tracing::info!(%host, ?faults, "faults");
                let faulty = Faulty {
                    faults: faults.clone(),
                    requests: AtomicU64::new(0),
                    started: Instant::now(),
                };
                (host.to_ascii_lowercase(), faulty)
            })
            .collect(),
        attempts: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(emulator);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::supervise::wait_for_signal().await;
        stop.cancel();
    });
    tracing::info!(listen = %config.listen, "VPC Lattice emulator ready");
    let limits = crate::connections::ConnectionLimits::SMALL;
    let divert = move |stream| passthrough::divert(services.clone(), stream);
    crate::https::serve_diverting(listener, certificate, app, limits, shutdown, divert).await
}

fn log_services(services: &Table) {
    for (host, service) in services {
        tracing::info!(%host, source = %service.source, arn = %service.arn, backend = service.backend.as_deref().unwrap_or("-"), passthrough = service.passthrough, network_policy = service.network_policy.is_some(), service_policy = service.service_policy.is_some(), "service");
    }
}

/// The services the manifests describe, by host name.
fn services(config: &EmulatorConfig) -> anyhow::Result<BTreeMap<String, Arc<Service>>> {
    let mut inputs = Inputs::default();
    for dir in &config.manifests {
        let observed = file::load(dir)?;
        for invalid in &observed.invalid {
            tracing::warn!(%invalid, "skipped");
        }
        inputs.routes.extend(observed.inputs.routes);
        inputs.grpc_routes.extend(observed.inputs.grpc_routes);
        inputs.gateways.extend(observed.inputs.gateways);
        inputs.classes.extend(observed.inputs.classes);
        inputs.auth_policies.extend(observed.inputs.auth_policies);
    }
    let (mesh, skipped) = lattice::build(&inputs, &[], &Settings::default());
    for invalid in &skipped {
        tracing::warn!(%invalid, "skipped");
    }
    let policy_text = |reference: &ObjectRef| {
        inputs.auth_policies.iter().find(|policy| {
            policy
                .object
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default")
                == reference.namespace
                && policy.object.metadata.name.as_deref() == Some(reference.name.as_str())
        })
    };
    let mut by_route: BTreeMap<(RouteKind, ObjectRef), Arc<Service>> = BTreeMap::new();
    let mut services = BTreeMap::new();
    for (host, destination) in &mesh.destinations {
        let Some(origin) = &destination.route else {
            continue;
        };
        if let Some(service) = by_route.get(&(origin.kind, origin.route.clone())) {
            services.insert(host.to_string(), Arc::clone(service));
            continue;
        }
        let named = |metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            metadata.name.as_deref() == Some(origin.route.name.as_str())
                && metadata.namespace.as_deref() == Some(origin.route.namespace.as_str())
        };
        // The route's first backend, and its annotations (the two kinds' generated types share
        // field names, not a type).
        macro_rules! first_backend {
            ($routes:expr) => {{
                let route = ($routes.iter())
                    .find(|route| named(&route.object.metadata))
                    .context("a destination without its route")?;
                let rules = route.object.spec.rules.iter().flatten();
                let backend = rules
                    .flat_map(|rule| rule.backend_refs.iter().flatten())
                    .map(|backend| (backend.namespace.clone(), backend.name.clone()))
                    .next();
                (backend, route.object.metadata.annotations.as_ref())
            }};
        }
        let (backend, annotations) = match origin.kind {
            RouteKind::Http => first_backend!(inputs.routes),
            RouteKind::Grpc => first_backend!(inputs.grpc_routes),
        };
        let mut network = Vec::new();
        let mut service_policy = Vec::new();
        for reference in &origin.auth_policies {
            let policy =
                policy_text(&reference.policy).context("a guarding policy that was not read")?;
            let parsed = Policy::parse(&policy.object.spec.policy).with_context(|| {
                format!("IAMAuthPolicy {} ({})", reference.policy, policy.origin)
            })?;
            match reference.level {
                PolicyLevel::ServiceNetwork => network.extend(parsed.statements),
                PolicyLevel::Service => service_policy.extend(parsed.statements),
            }
        }
        let backend = backend.and_then(|(namespace, name)| {
            let namespace = namespace.as_deref().unwrap_or(&origin.route.namespace);
            config
                .backends
                .get(&format!("{namespace}/{name}"))
                .or_else(|| config.backends.get(&name))
                .cloned()
        });
        let id = service_id(
            &origin.route,
            annotations
                .and_then(|a| a.get(lattice::ASSIGNED_DOMAIN_ANNOTATION))
                .map(String::as_str),
        );
        let service = Arc::new(Service {
            source: format!("route {}", origin.route),
            arn: format!(
                "arn:aws:vpc-lattice:{}:{}:service/{id}",
                config.region, config.account
            ),
            backend,
            grpc: origin.kind == RouteKind::Grpc,
            passthrough: false,
            network_policy: (!network.is_empty()).then_some(Policy {
                statements: network,
            }),
            service_policy: (!service_policy.is_empty()).then_some(Policy {
                statements: service_policy,
            }),
        });
        by_route.insert((origin.kind, origin.route.clone()), Arc::clone(&service));
        services.insert(host.to_string(), service);
    }
    Ok(services)
}

/// The service id Lattice assigned (from the assigned domain name, when the route carries it),
/// else one derived from the route's name.
fn service_id(route: &ObjectRef, assigned_domain: Option<&str>) -> String {
    let assigned = assigned_domain
        .and_then(|domain| domain.split('.').next())
        .and_then(|label| label.rsplit('-').next())
        .filter(|id| id.len() == 17 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    match assigned {
        Some(id) => format!("svc-{id}"),
        None => {
            let digest = hex::encode(Sha256::digest(route.to_string().as_bytes()));
            format!("svc-{}", &digest[..17])
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn handle(State(emulator): State<Arc<Emulator>>, request: Request) -> Response {
    let attempt = (request.headers().get("x-request-id"))
        .map(|id| emulator.attempt(&String::from_utf8_lossy(id.as_bytes())));
    let mut response = answer(&emulator, request).await;
    if let Some(attempt) = attempt {
        response
            .headers_mut()
            .insert(ATTEMPT_HEADER, attempt.into());
    }
    response
}

impl Emulator {
    /// Counts one more attempt of the request `id`; returns the count.
    fn attempt(&self, id: &str) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.len() >= ATTEMPTS_KEPT && !attempts.contains_key(id) {
            attempts.clear();
        }
        let count = attempts.entry(id.to_string()).or_default();
        *count += 1;
        *count
    }

    /// What the faults of the service at `name` make of this request, after their latency.
    async fn fault(&self, name: &str) -> Option<Fault> {
        let faulty = self.faults.get(name)?;
        if !faulty.faults.latency.is_zero() {
            tokio::time::sleep(faulty.faults.latency).await;
        }
        let nth = faulty.requests.fetch_add(1, Ordering::Relaxed);
        faulty
            .faults
            .meet(nth, faulty.started.elapsed(), fastrand::f64)
    }
}

async fn answer(emulator: &Emulator, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    let name = crate::signer::canonical::host(&host).to_ascii_lowercase();
    let name = name.split(':').next().unwrap_or_default().to_string();
    let found = emulator.services.borrow().get(&name).cloned();
    let Some(service) = found.filter(|service| !service.passthrough) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("NotFoundException: no VPC Lattice service answers for {name}\n"),
        );
    };
    let mut headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !headers.iter().any(|(name, _)| name == "host") {
        headers.push(("host".to_string(), host.clone()));
    }
    let method = request.method().as_str().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_string();
    let received = Received {
        method: &method,
        path: &path,
        headers: &headers,
    };
    let caller = match verify::verify(
        &received,
        &emulator.identities,
        &emulator.region,
        SystemTime::now(),
        emulator.clock_skew,
    ) {
        Ok(identity) => identity.map(Identity::caller),
        Err(error @ (SignatureError::Incomplete(_) | SignatureError::Invalid(_))) => {
            tracing::info!(%name, %error, "refused");
            return text(StatusCode::FORBIDDEN, format!("{error}\n"));
        }
    };
    let request_path = path.split('?').next().unwrap_or("/");
    let context = crate::policy::Request {
        caller,
        action: INVOKE.to_string(),
        resource: format!("{}{request_path}", service.arn),
        method: method.clone(),
        headers: headers.clone(),
        query: path
            .split_once('?')
            .map(|(_, query)| {
                query
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| match pair.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (pair.to_string(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        network: crate::policy::Network {
            port: Some(emulator.port.to_string()),
            ..Default::default()
        },
    };
    if let Verdict::Deny { message, .. } = evaluate_lattice(
        service.network_policy.as_ref(),
        service.service_policy.as_ref(),
        &context,
    ) {
        tracing::info!(%name, %message, "denied");
        return text(StatusCode::FORBIDDEN, message);
    }
    match emulator.fault(&name).await {
        Some(Fault::Unavailable) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no target of {name} is available\n"),
            );
        }
        Some(Fault::Reset) => {
            let mut reset = Response::default();
            reset.extensions_mut().insert(crate::https::ResetStream);
            return reset;
        }
        None => {}
    }
    let Some(backend) = service.backend.clone() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no backend is configured for {} (emulate-lattice --backend)\n",
                service.source
            ),
        );
    };
    let grpc = service.grpc
        || request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"));
    match forward(&backend, grpc, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%name, %backend, error = crate::logging::causes(error.as_ref()), "backend unreachable");
            text(
                StatusCode::BAD_GATEWAY,
                format!("the backend of {name} at {backend} is unreachable: {error:#}\n"),
            )
        }
    }
}

/// Sends `request` to `backend` (http://host:port; HTTP/2 in clear text for gRPC) and returns
/// its answer as it came.
async fn forward(backend: &str, grpc: bool, request: Request) -> anyhow::Result<Response> {
    let base: http::Uri = backend
        .parse()
        .with_context(|| format!("{backend:?} is not a URL"))?;
    let authority = base
        .authority()
        .context("the backend URL has no host")?
        .clone();
    let stream = TokioIo::new(tokio::net::TcpStream::connect(authority.as_str()).await?);
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    if grpc {
        // HTTP/2 wants the full URI; the authority is the one the caller asked for.
        let authority = parts
            .headers
            .get(http::header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or(authority.as_str())
            .to_string();
        parts.uri = format!("http://{authority}{path}").parse()?;
        parts.version = http::Version::HTTP_2;
        parts.headers.remove(http::header::HOST);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), stream)
                .await?;
        tokio::spawn(connection);
        let response = sender
            .send_request(http::Request::from_parts(parts, body))
            .await?;
        return Ok(response.map(Body::new));
    }
    // A request that came over HTTP/2 carries its host in the URI alone.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        parts
            .headers
            .insert(http::header::HOST, authority.as_str().parse()?);
    }
    parts.uri = path.parse()?;
    parts.version = http::Version::HTTP_11;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(stream).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(http::Request::from_parts(parts, body))
        .await?;
    Ok(response.map(Body::new))
}
