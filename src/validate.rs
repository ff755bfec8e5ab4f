//! `lattice-xds validate`: what a manifest directory would make the controller serve, and why
//! each object it would not serve is skipped, without starting anything (in the spirit of
//! `istioctl analyze`). The same reading and building as the controller's, so its answer is the
//! controller's.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::model::{Destination, Protocol, Settings};
use crate::provider::{InvalidInput, file, lattice};

/// What a directory yields.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Every destination a sidecar would be given, by host.
    pub served: Vec<Served>,
    /// Objects (or documents) skipped, and why.
    pub skipped: Vec<InvalidInput>,
    /// Fields read past in objects that are served.
    pub ignored: Vec<InvalidInput>,
}

/// One destination, as a sidecar would reach it.
#[derive(Debug, Serialize)]
pub struct Served {
    pub host: String,
    pub port: u16,
    /// `HTTPS`, `HTTP`, `gRPC` or `TLS passthrough`.
    pub protocol: &'static str,
    /// `HTTPRoute namespace/name`, the route that names the host.
    pub route: Option<String>,
    /// The auth policies VPC Lattice evaluates for it, with their level.
    pub auth_policies: Vec<String>,
}

impl Served {
    fn of(destination: &Destination) -> Self {
        let protocol = match (destination.protocol, destination.tls.is_some()) {
            (Protocol::Grpc, _) => "gRPC",
            (Protocol::TlsPassthrough, _) => "TLS passthrough",
            (Protocol::Http, true) => "HTTPS",
            (Protocol::Http, false) => "HTTP",
        };
        let route = destination.route.as_ref();
        Self {
            host: destination.host.clone(),
            port: destination.port,
            protocol,
            route: route.map(|origin| format!("{} {}", origin.kind, origin.route)),
            auth_policies: route
                .map(|origin| {
                    origin
                        .auth_policies
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Report {
    /// Whether anything was skipped or ignored.
    pub fn clean(&self) -> bool {
        self.skipped.is_empty() && self.ignored.is_empty()
    }

    /// The report for a person: a summary line, then what is served, skipped and ignored.
    pub fn text(&self, dir: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} destination{} served, {} object{} skipped, {} field{} ignored",
            dir.display(),
            self.served.len(),
            plural(self.served.len()),
            self.skipped.len(),
            plural(self.skipped.len()),
            self.ignored.len(),
            plural(self.ignored.len()),
        );
        if !self.served.is_empty() {
            out.push_str("\nServed:\n");
            let width = self.served.iter().map(|s| s.host.len()).max().unwrap_or(0);
            for served in &self.served {
                let _ = write!(
                    out,
                    "  {:width$}  {:>5}  {:<15}  {}",
                    served.host,
                    served.port,
                    served.protocol,
                    served.route.as_deref().unwrap_or("-"),
                );
                if !served.auth_policies.is_empty() {
                    let _ = write!(out, "; auth policies {}", served.auth_policies.join(", "));
                }
                out.push('\n');
            }
        }
        for (title, inputs) in [
            ("Skipped (not served)", &self.skipped),
            ("Ignored (the object is served without it)", &self.ignored),
        ] {
            if !inputs.is_empty() {
                let _ = writeln!(out, "\n{title}:");
                for input in inputs {
                    let _ = writeln!(out, "  {input}");
                }
            }
        }
        out
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Reads `dir` and builds what the controller would serve from it with `settings`.
pub fn validate(dir: &Path, settings: &Settings) -> Result<Report, file::FileError> {
    let observed = file::load(dir)?;
    let (mesh, built) = lattice::build(&observed.inputs, &[], settings);
    let mut skipped = observed.invalid;
    skipped.extend(built);
    skipped.sort();
    let mut ignored = observed.warnings;
    // By file, then line as a number (`a.yaml:9` before `a.yaml:15`).
    ignored.sort_by_cached_key(|warning| {
        let (file, line) = (warning.origin.rsplit_once(':'))
            .and_then(|(file, line)| Some((file.to_string(), line.parse::<usize>().ok()?)))
            .unwrap_or_else(|| (warning.origin.clone(), 0));
        (file, line, warning.reason.clone())
    });
    let served = mesh
        .destinations
        .values()
        .map(|destination| Served::of(destination))
        .collect();
    Ok(Report {
        served,
        skipped,
        ignored,
    })
}
