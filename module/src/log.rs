//! The module's log lines go to Envoy's own log (its `dynamic_modules` logger), so they take
//! Envoy's level and format, JSON included.

use std::fmt::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::abi::{self, ModuleBuffer, log_level};

/// Sends `tracing` events to Envoy's log.
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(EnvoyLog);
    // Only the first module in a process sets it; Envoy loads this one once.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// A line at error level, for when the module cannot start.
pub fn error(message: &str) {
    write(log_level::ERROR, message, None, 0);
}

struct EnvoyLog;

impl<S: Subscriber> Layer<S> for EnvoyLog {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            Level::TRACE => log_level::TRACE,
            Level::DEBUG => log_level::DEBUG,
            Level::INFO => log_level::INFO,
            Level::WARN => log_level::WARN,
            Level::ERROR => log_level::ERROR,
        };
        // SAFETY: a plain query of Envoy's logger, callable from any thread.
        if !unsafe { abi::envoy_dynamic_module_callback_log_enabled(level) } {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        write(
            level,
            &line.text,
            metadata.file(),
            metadata.line().unwrap_or(0),
        );
    }
}

fn write(level: u32, message: &str, file: Option<&str>, line: u32) {
    let file = file.map_or(ModuleBuffer::NULL, |file| {
        ModuleBuffer::new(file.as_bytes())
    });
    // SAFETY: Envoy copies the message and file name; its logger is thread-safe.
    unsafe {
        abi::envoy_dynamic_module_callback_log_v2(
            level,
            ModuleBuffer::new(message.as_bytes()),
            file,
            line,
        )
    };
}

/// An event as one line: its message, then `field=value` for each other field.
#[derive(Default)]
struct Line {
    text: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.text);
            let _ = write!(self.text, "{value:?}{fields}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }
}
