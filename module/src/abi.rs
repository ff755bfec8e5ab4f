//! The part of Envoy's dynamic-module ABI this filter uses, written from
//! `source/extensions/dynamic_modules/abi/abi.h` of Envoy 1.40.0 (commit 9e55809).
//!
//! Envoy calls the `envoy_dynamic_module_on_*` hooks that `lib.rs` exports and exports the
//! `envoy_dynamic_module_callback_*` functions declared here. Envoy loads a module with
//! `RTLD_NOW`, so a callback this Envoy does not export fails the load and names the symbol.
//!
//! Enums Envoy passes in are read as plain integers, never as Rust enums: a value a newer Envoy
//! adds must not be undefined behaviour here.

use std::ffi::c_void;
use std::marker::PhantomData;

/// What `envoy_dynamic_module_on_program_init` returns: the ABI version of Envoy 1.40's header
/// (`ENVOY_DYNAMIC_MODULES_ABI_VERSION`), NUL-terminated.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's filter configuration object (`DynamicModuleHttpFilterConfig`).
pub type FilterConfigEnvoy = *mut c_void;
/// Envoy's per-stream filter object (`DynamicModuleHttpFilter`).
pub type FilterEnvoy = *mut c_void;

/// Bytes Envoy owns, valid for the hook that received them or until the next setter call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, or none for a null buffer.
    ///
    /// # Safety
    /// The buffer must come from Envoy and still be valid, for as long as `'a`.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: Envoy hands out `length` readable bytes at `ptr`; the caller bounds `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
    }
}

/// Bytes this module owns, lent to Envoy for one call (Envoy copies what it keeps).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer<'a> {
    ptr: *const u8,
    length: usize,
    bytes: PhantomData<&'a [u8]>,
}

impl<'a> ModuleBuffer<'a> {
    pub const NULL: ModuleBuffer<'static> = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
        bytes: PhantomData,
    };

    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
            bytes: PhantomData,
        }
    }
}

/// A header as Envoy lends it (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    pub key: EnvoyBuffer,
    pub value: EnvoyBuffer,
}

impl EnvoyHeader {
    pub const EMPTY: Self = Self {
        key: EnvoyBuffer::EMPTY,
        value: EnvoyBuffer::EMPTY,
    };
}

/// A header this module lends Envoy (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHeader<'a> {
    pub key: ModuleBuffer<'a>,
    pub value: ModuleBuffer<'a>,
}

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADERS: u32 = 0;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response side).
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// The body, trailers and local-reply statuses: `Continue` is 0 for each.
pub const CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_log_level`, as spdlog numbers them.
pub mod log_level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
}

unsafe extern "C" {
    /// How many request (or response) headers there are; 0 when that map does not exist yet.
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoy,
        header_type: u32,
    ) -> usize;

    /// Fills `result` (as long as the size above) with every header, pseudo-headers included.
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoy,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;

    /// Replaces every value of `key` with `value`; a null value removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoy,
        header_type: u32,
        key: ModuleBuffer<'_>,
        value: ModuleBuffer<'_>,
    ) -> bool;

    /// Ends the stream with a local reply; `details` becomes `%RESPONSE_CODE_DETAILS%`.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoy,
        status_code: u32,
        headers: *const ModuleHeader<'_>,
        headers_size: usize,
        body: ModuleBuffer<'_>,
        details: ModuleBuffer<'_>,
    );

    /// A handle that brings an event back to this stream's worker thread; usable from any
    /// thread, deleted by the module exactly once.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoy,
    ) -> *mut c_void;

    /// Calls `on_http_filter_scheduled` with `event` on the stream's worker, unless the stream
    /// is gone by then.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    /// Resumes a stream whose request-headers hook returned `StopIteration`.
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoy);

    /// Defines a counter of the filter configuration, with these label names; its id goes to
    /// `id`. Returns 0 on success.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoy,
        name: ModuleBuffer<'_>,
        label_names: *const ModuleBuffer<'_>,
        label_names_size: usize,
        id: *mut usize,
    ) -> u32;

    /// Adds `value` to the counter `id` of the stream's filter configuration, with these label
    /// values. Returns 0 on success.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoy,
        id: usize,
        label_values: *const ModuleBuffer<'_>,
        label_values_size: usize,
        value: u64,
    ) -> u32;

    /// Whether Envoy's `dynamic_modules` logger writes lines of `level`.
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    /// Writes a line to Envoy's `dynamic_modules` logger (thread-safe).
    pub fn envoy_dynamic_module_callback_log_v2(
        level: u32,
        message: ModuleBuffer<'_>,
        source_file: ModuleBuffer<'_>,
        source_line: u32,
    );
}
