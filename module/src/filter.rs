//! Signing a request inside Envoy: the process-wide signer, the controller's configuration of
//! one filter, and what the filter does with a request's headers.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use clap::Parser;
use lattice_xds::signer::canonical::Request;
use lattice_xds::signer::credentials::{self, CredentialStore};
use lattice_xds::signer::metrics::Metrics;
use lattice_xds::signer::module::{self, Settings};
use lattice_xds::signer::{
    Mutation, Overrides, Refusal, Signer, SignerArgs, SignerConfig, default_chain, envoy_request,
};
use tokio_util::sync::CancellationToken;

use crate::abi::{
    self, EnvoyHeader, FilterConfigEnvoy, FilterEnvoy, ModuleBuffer, REQUEST_HEADERS,
};

/// A refused request's `%RESPONSE_CODE_DETAILS%` is `lattice_xds_signer_<reason>`, as with the
/// signer sidecar.
const DETAILS_PREFIX: &str = "lattice_xds_signer_";
const VIA: &str = "module";

static SIGNER: OnceLock<Signer> = OnceLock::new();

/// Requests that arrived before the first credentials had loaded: each waits (held by Envoy,
/// not by a thread) until the first load ends, then is signed or refused.
static WAITING: Mutex<Vec<Scheduler>> = Mutex::new(Vec::new());
/// Set, under `WAITING`'s lock, once the first load has ended: from then on no request waits,
/// and a request reads one flag to know it.
static FIRST_LOAD_ENDED: AtomicBool = AtomicBool::new(false);

/// Envoy's handle for bringing an event back to a stream's worker.
struct Scheduler(*mut c_void);

// SAFETY: Envoy's scheduler is made to be committed from any thread; each is used by one
// thread at a time (behind `WAITING`) and deleted once.
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// Wakes the stream (`on_http_filter_scheduled`) and lets go of the handle.
    fn wake(self) {
        // SAFETY: the handle came from `scheduler_new` and is deleted here only, once; Envoy
        // copies what the event needs before `commit` returns.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, 0);
            abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0);
        }
    }
}

/// The signer's settings, read from the environment as the signer sidecar reads them.
#[derive(Parser)]
#[command(name = "lattice-xds-signer")]
struct Environment {
    #[command(flatten)]
    signer: SignerArgs,
}

/// The process-wide part: one signer and one credential refresher for every filter.
pub struct Module;

impl Module {
    pub fn start() -> Result<(), String> {
        let environment = Environment::try_parse_from(["lattice-xds-signer"])
            .map_err(|error| format!("the signer's environment: {}", error.render()))?;
        let defaults = SignerConfig::from(environment.signer).defaults;
        let store = CredentialStore::default();
        let metrics = Arc::new(Metrics::default());
        let refresher = (defaults.region.clone(), store.clone(), Arc::clone(&metrics));
        std::thread::Builder::new()
            .name("lattice-xds-credentials".to_string())
            .spawn(move || refresh(refresher))
            .map_err(|error| format!("cannot start the credential refresher: {error}"))?;
        tracing::info!(
            service = defaults.service,
            region = defaults.region,
            allowed_services = ?defaults.allowed_services,
            allowed_regions = ?defaults.allowed_regions,
            "lattice-xds signer module loaded for Envoy {}",
            module::ENVOY_VERSION
        );
        SIGNER
            .set(Signer::new(defaults, store, metrics))
            .map_err(|_| "the module was started twice".to_string())
    }
}

/// Keeps the credentials current for the life of the process: Envoy never unloads the module
/// (`do_not_close`), so the thread never outlives its code.
fn refresh((region, store, metrics): (Option<String>, CredentialStore, Arc<Metrics>)) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = format!("cannot start the credential refresher: {error}");
            tracing::error!(%error, "every request will be refused");
            store.fail(error);
            wake_waiting();
            return;
        }
    };
    runtime.block_on(async move {
        let waiting = store.clone();
        tokio::spawn(async move {
            waiting.first_load().await;
            wake_waiting();
        });
        let provider = default_chain(region).await;
        credentials::refresh(provider, store, metrics, CancellationToken::new()).await;
    });
}

/// Once the first load has ended: lets every request that waited for it go on, to be signed
/// or refused, and no other wait.
fn wake_waiting() {
    let woken = {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        FIRST_LOAD_ENDED.store(true, Ordering::Release);
        std::mem::take(&mut *waiting)
    };
    for scheduler in woken {
        scheduler.wake();
    }
}

#[derive(Debug)]
pub struct FilterConfig {
    overrides: Overrides,
    counters: Counters,
}

/// The signer's counts, as Envoy stats of the filter (`lattice_xds_signer.requests_signed`,
/// `lattice_xds_signer.requests_refused.reason.<reason>`), so whatever scrapes Envoy sees them.
#[derive(Debug)]
struct Counters {
    signed: usize,
    refused: usize,
}

impl Counters {
    /// # Safety
    /// `config` must be the filter configuration Envoy is creating (on the main thread).
    unsafe fn define(config: FilterConfigEnvoy) -> Result<Self, String> {
        let define = |name: &str, labels: &[ModuleBuffer<'_>]| {
            let mut id = 0;
            // SAFETY: the caller's promise; Envoy copies the names.
            let result = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    config,
                    ModuleBuffer::new(name.as_bytes()),
                    labels.as_ptr(),
                    labels.len(),
                    &mut id,
                )
            };
            match result {
                abi::METRICS_SUCCESS => Ok(id),
                other => Err(format!(
                    "cannot define the counter {name} (Envoy said {other})"
                )),
            }
        };
        Ok(Self {
            signed: define("requests_signed", &[])?,
            refused: define("requests_refused", &[ModuleBuffer::new(b"reason")])?,
        })
    }

    /// # Safety
    /// `filter` must be the stream of the running hook.
    unsafe fn count(&self, filter: FilterEnvoy, refused: Option<&str>) {
        let (id, labels) = match refused {
            None => (self.signed, Vec::new()),
            Some(reason) => (self.refused, vec![ModuleBuffer::new(reason.as_bytes())]),
        };
        // SAFETY: the caller's promise; a count that Envoy cannot take is not worth failing
        // the request for.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                filter,
                id,
                labels.as_ptr(),
                labels.len(),
                1,
            )
        };
    }
}

impl FilterConfig {
    /// # Safety
    /// `envoy` must be the filter configuration Envoy is creating (on the main thread).
    pub unsafe fn parse(
        envoy: FilterConfigEnvoy,
        name: &[u8],
        config: &[u8],
    ) -> Result<Self, String> {
        if name != module::FILTER.as_bytes() {
            return Err(format!(
                "unknown filter {:?}: this module has one filter, {:?}",
                String::from_utf8_lossy(name),
                module::FILTER
            ));
        }
        let settings: Settings = if config.is_empty() {
            Settings::default()
        } else {
            serde_json::from_slice(config).map_err(|error| format!("its configuration: {error}"))?
        };
        Ok(Self {
            overrides: settings.overrides().map_err(|error| error.to_string())?,
            // SAFETY: the caller's promise.
            counters: unsafe { Counters::define(envoy)? },
        })
    }
}

/// Signs the request whose headers Envoy holds, or ends it with the reason, or holds it until
/// the first credentials have loaded; the hook's status.
///
/// # Safety
/// `filter` must be the stream Envoy is running a request-headers hook for.
pub unsafe fn sign(filter: FilterEnvoy, config: &FilterConfig) -> u32 {
    let Some(signer) = SIGNER.get() else {
        let refusal = Refusal::BadRequest("the module did not start".to_string());
        // SAFETY: the caller's promise.
        unsafe { refuse(filter, refusal) };
        return abi::HEADERS_STOP_ITERATION;
    };
    if !FIRST_LOAD_ENDED.load(Ordering::Acquire) {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock the refresher wakes the waiting under.
        if !FIRST_LOAD_ENDED.load(Ordering::Acquire) {
            // SAFETY: the caller's promise: this hook runs on the stream's worker.
            let scheduler =
                unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(filter) };
            waiting.push(Scheduler(scheduler));
            return abi::HEADERS_STOP_ITERATION;
        }
    }
    // SAFETY: the caller's promise.
    if unsafe { sign_now(filter, signer, config) } {
        abi::HEADERS_CONTINUE
    } else {
        abi::HEADERS_STOP_ITERATION
    }
}

/// Signs a request that waited for the first credentials, or refuses it, and lets it go on.
///
/// # Safety
/// `filter` must be a stream held by [`sign`], in its scheduled hook.
pub unsafe fn resume(filter: FilterEnvoy, config: &FilterConfig) {
    let Some(signer) = SIGNER.get() else {
        return;
    };
    // SAFETY: the caller's promise.
    if unsafe { sign_now(filter, signer, config) } {
        // SAFETY: the caller's promise: the stream was stopped in its request headers.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(filter) };
    }
}

/// Signs the request, or ends it with the reason; whether it was signed.
///
/// # Safety
/// `filter` must be the stream of the running hook, with its request headers.
unsafe fn sign_now(filter: FilterEnvoy, signer: &Signer, config: &FilterConfig) -> bool {
    // SAFETY: the caller's promise; the headers are read before any is changed.
    let signed = unsafe {
        with_request(filter, |request| {
            signer.sign(request, &config.overrides, VIA)
        })
    };
    match signed {
        Ok(mutation) => {
            // SAFETY: the caller's promise.
            unsafe {
                apply(filter, &mutation);
                config.counters.count(filter, None);
            }
            true
        }
        Err(refusal) => {
            // SAFETY: the caller's promise.
            unsafe {
                config.counters.count(filter, Some(refusal.reason()));
                refuse(filter, refusal);
            }
            false
        }
    }
}

/// The request as the signing code sees it, borrowed from Envoy's header map for `read`.
///
/// # Safety
/// `filter` must be the stream of the running hook, and no header may change during `read`.
unsafe fn with_request<T>(
    filter: FilterEnvoy,
    read: impl FnOnce(&Request<'_>) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    // SAFETY: the caller's promise.
    let count = unsafe {
        abi::envoy_dynamic_module_callback_http_get_headers_size(filter, REQUEST_HEADERS)
    };
    let mut headers = vec![EnvoyHeader::EMPTY; count];
    // SAFETY: `headers` has room for the `count` entries Envoy writes.
    let filled = unsafe {
        abi::envoy_dynamic_module_callback_http_get_headers(
            filter,
            REQUEST_HEADERS,
            headers.as_mut_ptr(),
        )
    };
    if !filled {
        return Err(Refusal::BadRequest(
            "Envoy holds no request headers".to_string(),
        ));
    }
    let mut pairs = Vec::with_capacity(count);
    for header in &headers {
        // SAFETY: Envoy's header map is unchanged until this function returns.
        let (name, value) = unsafe { (header.key.bytes(), header.value.bytes()) };
        let name = std::str::from_utf8(name)
            .map_err(|_| Refusal::BadRequest("a header name is not UTF-8".to_string()))?;
        let value = std::str::from_utf8(value)
            .map_err(|_| Refusal::BadRequest(format!("the value of header {name} is not UTF-8")))?;
        pairs.push((name, value));
    }
    read(&envoy_request(&pairs)?)
}

/// Removes the application's own signing headers and sets the signature.
///
/// # Safety
/// `filter` must be the stream of the running request-headers hook.
unsafe fn apply(filter: FilterEnvoy, mutation: &Mutation) {
    for name in &mutation.remove {
        // SAFETY: the caller's promise; a null value removes the header.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                filter,
                REQUEST_HEADERS,
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        };
    }
    for (name, value) in &mutation.set.headers {
        // SAFETY: the caller's promise; Envoy copies both buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                filter,
                REQUEST_HEADERS,
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::new(value.as_bytes()),
            )
        };
    }
}

/// Ends the stream with the refusal's status, body and reason, as the signer sidecar answers.
///
/// # Safety
/// `filter` must be the stream of the running request-headers hook.
unsafe fn refuse(filter: FilterEnvoy, refusal: Refusal) {
    let details = format!("{DETAILS_PREFIX}{}", refusal.reason());
    let status = refusal.status().into();
    let body = in_module_words(refusal).body();
    // SAFETY: the caller's promise.
    unsafe { respond(filter, status, &body, &details) };
}

/// The refusal as the module's user can act on it: the scope comes from Envoy's environment,
/// so a refusal names the variable rather than the signer sidecar's flag.
fn in_module_words(refusal: Refusal) -> Refusal {
    match refusal {
        Refusal::NotAllowed {
            what,
            flag,
            allowed,
            reason,
        } => Refusal::NotAllowed {
            what,
            flag: match flag {
                "--allow-service" => "LATTICE_XDS_ALLOW_SERVICE",
                "--allow-region" => "LATTICE_XDS_ALLOW_REGION",
                other => other,
            },
            allowed,
            reason,
        },
        other => other,
    }
}

/// Ends the stream after a panic in the module: the request is not sent.
///
/// # Safety
/// `filter` must be the stream of the running request-headers hook.
pub unsafe fn panicked(filter: FilterEnvoy) {
    let body =
        "lattice-xds signer: the signing module failed on this request, so it was not sent\n";
    // SAFETY: the caller's promise.
    unsafe { respond(filter, 500, body, "lattice_xds_signer_module_panic") };
}

/// # Safety
/// `filter` must be the stream of the running request-headers hook.
unsafe fn respond(filter: FilterEnvoy, status: u32, body: &str, details: &str) {
    let headers = [abi::ModuleHeader {
        key: ModuleBuffer::new(b"content-type"),
        value: ModuleBuffer::new(b"text/plain"),
    }];
    // SAFETY: the caller's promise; Envoy copies the headers, body and details.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            filter,
            status,
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::new(body.as_bytes()),
            ModuleBuffer::new(details.as_bytes()),
        )
    };
}
