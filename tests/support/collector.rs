//! An OpenTelemetry Collector, built from its Go modules by `scripts/install-otelcol.sh`: it
//! receives OTLP over gRPC on a loopback port and writes what it received to a file, one JSON
//! line (OTLP's JSON encoding) per batch, for the test to read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::Running;
use super::{eventually, free_port};

/// The collector binary (built on first use, then cached; asked for once per test binary).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-otelcol.sh");
        let output = Command::new(script)
            .output()
            .expect("run install-otelcol.sh");
        assert!(
            output.status.success(),
            "install-otelcol.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

pub struct Collector {
    /// The OTLP/gRPC address: `127.0.0.1:PORT`.
    pub address: String,
    spans: PathBuf,
    _process: Running,
}

/// One span as received, with its string attributes.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: u64,
    pub service: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        (self.attributes.iter())
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

impl Collector {
    pub async fn start(dir: &Path) -> Collector {
        let port = free_port();
        let spans = dir.join("spans.jsonl");
        let config = dir.join("otelcol.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\n\
                 exporters:\n  file:\n    path: {}\n    flush_interval: 100ms\n\
                 service:\n  telemetry:\n    metrics:\n      level: none\n\
                 \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
                spans.display()
            ),
        )
        .unwrap();
        let mut command = Command::new(binary());
        command.arg(format!("--config={}", config.display()));
        let process = Running::spawn(&mut command, &dir.join("otelcol.log"));
        eventually("the collector", Duration::from_secs(30), || async {
            let log = process.log_text();
            assert!(!log.contains("Error:"), "the collector failed:\n{log}");
            log.contains("Everything is ready").then_some(())
        })
        .await;
        Collector {
            address: format!("127.0.0.1:{port}"),
            spans,
            _process: process,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.spans).unwrap_or_default();
        let mut spans = Vec::new();
        for line in text.lines() {
            let Ok(batch) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            for resource in batch["resourceSpans"].as_array().into_iter().flatten() {
                let service = string_attributes(&resource["resource"]["attributes"])
                    .into_iter()
                    .find(|(key, _)| key == "service.name")
                    .map(|(_, value)| value)
                    .unwrap_or_default();
                let scopes = resource["scopeSpans"].as_array().into_iter().flatten();
                for span in scopes.flat_map(|scope| scope["spans"].as_array().into_iter().flatten())
                {
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
                    spans.push(Span {
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent_span_id: text("parentSpanId"),
                        name: text("name"),
                        kind: span["kind"].as_u64().unwrap_or_default(),
                        service: service.clone(),
                        attributes: string_attributes(&span["attributes"]),
                    });
                }
            }
        }
        spans
    }
}

/// OTLP JSON's `[{key, value: {stringValue | intValue | ...}}]`, each value as text.
fn string_attributes(attributes: &serde_json::Value) -> Vec<(String, String)> {
    let attributes = attributes.as_array().into_iter().flatten();
    attributes
        .filter_map(|attribute| {
            let key = attribute["key"].as_str()?.to_string();
            let value = attribute["value"].as_object()?.values().next()?;
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((key, value))
        })
        .collect()
}
