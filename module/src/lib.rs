//! The lattice-xds signer as an Envoy dynamic module: the HTTP filter `lattice_xds_signer`
//! signs each request inside the sidecar Envoy, with the same code and the same promises as the
//! signer sidecar (`lattice_xds::signer`), and without a call out of Envoy per request.
//!
//! - **Credentials** are the pod's, from the SDK's default chain (the EKS Pod Identity agent),
//!   loaded and refreshed on a thread of the module's own. A request waits only for the first
//!   load after Envoy starts, held by Envoy rather than by a thread, and never for a refresh.
//! - **Scope.** The services and regions it signs for come from the Envoy container's
//!   environment, with the signer sidecar's variables (`LATTICE_XDS_ALLOW_SERVICE`,
//!   `LATTICE_XDS_ALLOW_REGION`, `LATTICE_XDS_REGION`, …), which the injector sets; the
//!   controller's filter configuration chooses within them.
//! - **Never unsigned.** Without credentials, or for a request it cannot or may not sign, the
//!   filter answers with the signer's status and reason and the request is not sent. A panic
//!   inside the module is an error answer too.
//! - **The ABI.** It is built for Envoy 1.40 only, and refuses to load into another Envoy
//!   (see `lattice_xds::signer::module`).
//!
//! Envoy loads it as `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` when the controller
//! serves `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter` with the name
//! `lattice_xds_signer` (`--signing=module`).

mod abi;
mod filter;
mod log;

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi::{EnvoyBuffer, FilterConfigEnvoy, FilterEnvoy};

/// Called once when Envoy loads the module: checks the host, reads the signer's settings from
/// the environment and starts loading credentials. NULL fails the load, after a log line that
/// says why.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    let started = catch_unwind(|| {
        log::install();
        lattice_xds::signer::module::check(std::path::Path::new("/proc/self/exe"))?;
        filter::Module::start()
    });
    match started {
        Ok(Ok(())) => abi::ABI_VERSION.as_ptr().cast(),
        Ok(Err(error)) => {
            log::error(&format!("lattice-xds signer module not loaded: {error}"));
            std::ptr::null()
        }
        Err(_) => {
            log::error("lattice-xds signer module not loaded: it panicked while starting");
            std::ptr::null()
        }
    }
}

/// A filter configuration from the controller (JSON); NULL rejects it, after a log line.
///
/// # Safety
/// Envoy calls it on the main thread with the configuration it is creating.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoy,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const filter::FilterConfig {
    let parsed = catch_unwind(|| {
        // SAFETY: both buffers are Envoy's and valid for this call; they are copied from. The
        // configuration is the one Envoy is creating, on the main thread.
        unsafe { filter::FilterConfig::parse(config_envoy, name.bytes(), config.bytes()) }
    });
    match parsed {
        Ok(Ok(config)) => Box::into_raw(Box::new(config)),
        Ok(Err(error)) => {
            log::error(&format!("lattice-xds signer filter rejected: {error}"));
            std::ptr::null()
        }
        Err(_) => std::ptr::null(),
    }
}

/// # Safety
/// Envoy calls it once, with the pointer `config_new` returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: *const filter::FilterConfig,
) {
    if !config.is_null() {
        // SAFETY: `config` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
        drop(unsafe { Box::from_raw(config.cast_mut()) });
    }
}

/// A stream's filter needs no state of its own: it is its configuration.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const filter::FilterConfig,
    _filter_envoy: FilterEnvoy,
) -> *const filter::FilterConfig {
    config
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    _filter: *const filter::FilterConfig,
) {
}

/// Signs the request, or ends it with the reason it was not signed, or holds it until the
/// first credentials have loaded.
///
/// # Safety
/// Envoy calls it on the stream's worker with the pointer `filter_new` returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoy,
    config: *const filter::FilterConfig,
    _end_of_stream: bool,
) -> u32 {
    let signed = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes back the pointer `filter_new` returned, whose configuration
        // outlives every stream that uses it.
        let config = unsafe { &*config };
        // SAFETY: `filter_envoy` is the stream Envoy is running this hook for.
        unsafe { filter::sign(filter_envoy, config) }
    }));
    match signed {
        Ok(status) => status,
        Err(_) => {
            // SAFETY: as above; the stream is still this hook's.
            unsafe { filter::panicked(filter_envoy) };
            abi::HEADERS_STOP_ITERATION
        }
    }
}

/// A request that waited for the first credentials: signed or refused now.
///
/// # Safety
/// Envoy calls it on the stream's worker with the pointer `filter_new` returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: FilterEnvoy,
    config: *const filter::FilterConfig,
    _event: u64,
) {
    let resumed = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in the request-headers hook; Envoy runs this on the stream's worker.
        unsafe { filter::resume(filter_envoy, &*config) }
    }));
    if resumed.is_err() {
        // SAFETY: the stream is this hook's, and still held in its request headers.
        unsafe { filter::panicked(filter_envoy) };
    }
}

/// The hooks Envoy requires besides those above; the filter has nothing to do in them.
macro_rules! pass {
    ($($hook:ident($($arg:ident: $ty:ty),*) -> $status:expr;)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $hook($($arg: $ty),*) -> u32 {
            let _ = ($($arg),*);
            $status
        }
    )*};
}

macro_rules! ignore {
    ($($hook:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $hook($($arg: $ty),*) {
            let _ = ($($arg),*);
        }
    )*};
}

type Filter = *const filter::FilterConfig;
type Headers = *const abi::EnvoyHeader;
type Chunks = *const EnvoyBuffer;

pass! {
    envoy_dynamic_module_on_http_filter_request_body(e: FilterEnvoy, f: Filter, end: bool) -> abi::CONTINUE;
    envoy_dynamic_module_on_http_filter_request_trailers(e: FilterEnvoy, f: Filter) -> abi::CONTINUE;
    envoy_dynamic_module_on_http_filter_response_headers(e: FilterEnvoy, f: Filter, end: bool) -> abi::HEADERS_CONTINUE;
    envoy_dynamic_module_on_http_filter_response_body(e: FilterEnvoy, f: Filter, end: bool) -> abi::CONTINUE;
    envoy_dynamic_module_on_http_filter_response_trailers(e: FilterEnvoy, f: Filter) -> abi::CONTINUE;
    envoy_dynamic_module_on_http_filter_local_reply(e: FilterEnvoy, f: Filter, code: u32, details: EnvoyBuffer, reset: bool) -> abi::CONTINUE;
}

ignore! {
    envoy_dynamic_module_on_http_filter_stream_complete(e: FilterEnvoy, f: Filter);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(e: FilterEnvoy, f: Filter);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(e: FilterEnvoy, f: Filter);
    envoy_dynamic_module_on_http_filter_http_callout_done(e: FilterEnvoy, f: Filter, id: u64, result: u32, headers: Headers, headers_size: usize, chunks: Chunks, chunks_size: usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(e: FilterEnvoy, f: Filter, id: u64, headers: Headers, headers_size: usize, end: bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(e: FilterEnvoy, f: Filter, id: u64, chunks: Chunks, chunks_size: usize, end: bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(e: FilterEnvoy, f: Filter, id: u64, headers: Headers, headers_size: usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(e: FilterEnvoy, f: Filter, id: u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(e: FilterEnvoy, f: Filter, id: u64, reason: u32);
    envoy_dynamic_module_on_http_filter_config_scheduled(e: FilterConfigEnvoy, f: Filter, event: u64);
    envoy_dynamic_module_on_http_filter_config_http_callout_done(e: FilterConfigEnvoy, f: Filter, id: u64, result: u32, headers: Headers, headers_size: usize, chunks: Chunks, chunks_size: usize);
    envoy_dynamic_module_on_http_filter_config_http_stream_headers(e: FilterConfigEnvoy, f: Filter, id: u64, headers: Headers, headers_size: usize, end: bool);
    envoy_dynamic_module_on_http_filter_config_http_stream_data(e: FilterConfigEnvoy, f: Filter, id: u64, chunks: Chunks, chunks_size: usize, end: bool);
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers(e: FilterConfigEnvoy, f: Filter, id: u64, headers: Headers, headers_size: usize);
    envoy_dynamic_module_on_http_filter_config_http_stream_complete(e: FilterConfigEnvoy, f: Filter, id: u64);
    envoy_dynamic_module_on_http_filter_config_http_stream_reset(e: FilterConfigEnvoy, f: Filter, id: u64, reason: u32);
    envoy_dynamic_module_on_http_filter_per_route_config_destroy(f: Filter);
}

/// The filter takes no per-route configuration; NULL rejects one.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const filter::FilterConfig {
    log::error("lattice-xds signer filter takes no per-route configuration");
    std::ptr::null()
}
