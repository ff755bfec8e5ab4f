//! Where log lines go and how they read: stderr, as text (coloured only on a terminal, so a
//! pod's log file holds no escape codes) or as one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, fmt};

/// The form of each log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal only.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, and the spans.
    Json,
}

/// Installs the process's logger: lines that `filter` lets through, on stderr, in `format`.
pub fn init<F>(filter: F, format: LogFormat)
where
    F: Layer<Registry> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal();
            let lines = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
            registry.with(lines).init();
        }
        LogFormat::Json => {
            let lines = fmt::layer().json().with_writer(std::io::stderr);
            registry.with(lines).init();
        }
    }
}
