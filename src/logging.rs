//! Where log lines go and how they read: stderr, as text (coloured only on a terminal, so a
//! pod's log file holds no escape codes) or as one JSON object per line; and an error with its
//! causes in one line, each said once.

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

/// `error` and its causes in one line, `error: cause: cause`, each said once: a cause whose text
/// is already in the line (many libraries put their source's message in their own) is left out.
/// The AWS SDK's messages, which this writes, never carry secrets.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        // A library error that says its source in its own message, under a context that does too.
        #[derive(Debug, thiserror::Error)]
        #[error("failed to read kubeconfig: {0}")]
        struct Read(#[source] std::io::Error);
        let error = anyhow::Error::new(Read(io)).context("cannot read kubeconfig /nope");
        assert_eq!(
            causes(error.as_ref()),
            "cannot read kubeconfig /nope: failed to read kubeconfig: No such file or directory"
        );
        assert_eq!(
            format!("{error:#}"),
            "cannot read kubeconfig /nope: failed to read kubeconfig: No such file or directory: No such file or directory",
            "what causes() improves on"
        );
    }
}
