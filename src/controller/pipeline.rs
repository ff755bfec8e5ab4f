//! Inputs → mesh → resources → snapshot. Each change of the provider's output is allowed to
//! settle, then rebuilt; invalid objects are reported and skipped, fields an object's schema
//! does not have are reported and the object served, an inconsistent result is reported and
//! the previous snapshot stays served.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::metrics::{KindLabel, Metrics, StageLabel};
use crate::model::{
    Mesh, PRIVATE_CA_BUNDLE, Settings, TrustBundle, UNKNOWN_HOSTS_BUNDLE, UnknownHosts,
};
use crate::provider::discovery::{DiscoveryState, Service};
use crate::provider::{InvalidInput, Observed, lattice};
use crate::translate::translate_from;
use crate::trust::fetch::TrustState;
use crate::xds::snapshot::Snapshot;

pub struct Pipeline {
    settings: Settings,
    metrics: Arc<Metrics>,
    debounce: Duration,
    /// Every object skipped by the last rebuild (the Kubernetes provider turns them into Events).
    reports: watch::Sender<Vec<InvalidInput>>,
    /// The combined private-CA bundle, when any CA is configured.
    ca_bundle: watch::Sender<Option<String>>,
    /// The mesh of the last published snapshot, for status readers.
    published: watch::Sender<Option<Arc<Mesh>>>,
    /// Builds each mesh by difference from the one before.
    builder: lattice::Builder,
    mesh: Option<Arc<Mesh>>,
    snapshot: Option<Arc<Snapshot>>,
    invalid_kinds: BTreeSet<String>,
    warning_kinds: BTreeSet<String>,
}

impl Pipeline {
    pub fn new(settings: Settings, metrics: Arc<Metrics>, debounce: Duration) -> Self {
        Self {
            settings,
            metrics,
            debounce,
            reports: watch::Sender::new(Vec::new()),
            ca_bundle: watch::Sender::new(None),
            published: watch::Sender::new(None),
            builder: lattice::Builder::default(),
            mesh: None,
            snapshot: None,
            invalid_kinds: BTreeSet::new(),
            warning_kinds: BTreeSet::new(),
        }
    }

    /// Follows the objects skipped by each rebuild.
    pub fn reports(&self) -> watch::Receiver<Vec<InvalidInput>> {
        self.reports.subscribe()
    }

    /// Follows the combined private-CA bundle.
    pub fn ca_bundle(&self) -> watch::Receiver<Option<String>> {
        self.ca_bundle.subscribe()
    }

    /// Follows the mesh each published snapshot was translated from, published just before it.
    pub fn meshes(&self) -> watch::Receiver<Option<Arc<Mesh>>> {
        self.published.subscribe()
    }

    /// Rebuilds after every change of `observed`, `trust` or `discovery` until a channel
    /// closes. Nothing is published before the inputs are read, every CA has been fetched once
    /// and the VPC Lattice API has been polled once.
    pub async fn run(
        mut self,
        mut observed: watch::Receiver<Option<Arc<Observed>>>,
        mut trust: watch::Receiver<TrustState>,
        mut discovery: watch::Receiver<DiscoveryState>,
        snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    ) {
        // The trust fetcher ends at once when no CA is configured; its last state still holds.
        let mut trust_open = true;
        let mut discovery_open = true;
        loop {
            tokio::select! {
                changed = observed.changed() => if changed.is_err() { return },
                changed = trust.changed(), if trust_open => {
                    if changed.is_err() {
                        trust_open = false;
                        continue;
                    }
                }
                changed = discovery.changed(), if discovery_open => {
                    if changed.is_err() {
                        discovery_open = false;
                        continue;
                    }
                }
            }
            // Let a burst of changes settle into one rebuild (istiod's debounce, 100 ms).
            tokio::time::sleep(self.debounce).await;
            let Some(current) = observed.borrow_and_update().clone() else {
                continue;
            };
            let trust_state = trust.borrow_and_update().clone();
            let discovered = discovery.borrow_and_update().clone();
            if !trust_state.settled() || !discovered.settled {
                continue;
            }
            if let Some(snapshot) = self.rebuild(&current, &trust_state, &discovered.services) {
                if snapshots.send(Some(snapshot)).is_err() {
                    return;
                }
                // What the rebuild freed goes back to the system.
                drop(current);
                tokio::task::spawn_blocking(crate::memory::return_free_memory);
            }
        }
    }

    /// The configured bundles plus one per fetched CA, every CA also joining the combined
    /// private-CA bundle that custom-domain destinations trust; and, when unknown hosts are
    /// forwarded, that bundle with the system roots.
    fn settings_with(&self, trust: &TrustState) -> Settings {
        let mut settings = self.settings.clone();
        let mut combined =
            settings
                .bundles
                .get(PRIVATE_CA_BUNDLE)
                .cloned()
                .unwrap_or(TrustBundle {
                    name: PRIVATE_CA_BUNDLE.to_string(),
                    pem: String::new(),
                    sources: Vec::new(),
                });
        for ca in &trust.cas {
            let Some(pem) = &ca.pem else { continue };
            let name = format!("pca/{}", ca.arn.rsplit('/').next().unwrap_or(&ca.arn));
            settings.bundles.insert(
                name.clone(),
                TrustBundle {
                    name,
                    pem: pem.clone(),
                    sources: vec![ca.arn.clone()],
                },
            );
            combined.pem.push_str(pem);
            combined.sources.push(ca.arn.clone());
        }
        if combined.pem.is_empty() {
            return settings;
        }
        if let (UnknownHosts::Forward, Some(roots)) =
            (settings.unknown_hosts, &settings.system_roots)
        {
            let mut sources = combined.sources.clone();
            sources.push(settings.system_ca_file.clone());
            let name = UNKNOWN_HOSTS_BUNDLE.to_string();
            let bundle = TrustBundle {
                name: name.clone(),
                pem: format!("{}{roots}", combined.pem),
                sources,
            };
            settings.bundles.insert(name, bundle);
        }
        settings
            .bundles
            .insert(PRIVATE_CA_BUNDLE.to_string(), combined);
        settings
    }

    /// A new snapshot when the mesh changed and the result is consistent.
    fn rebuild(
        &mut self,
        observed: &Observed,
        trust: &TrustState,
        discovered: &[Service],
    ) -> Option<Arc<Snapshot>> {
        let settings = self.settings_with(trust);
        let bundle = settings
            .bundles
            .get(PRIVATE_CA_BUNDLE)
            .map(|bundle| bundle.pem.clone());
        self.ca_bundle.send_if_modified(|current| {
            let changed = *current != bundle;
            *current = bundle;
            changed
        });
        let started = std::time::Instant::now();
        let (mesh, skipped) = (self.builder).build(&observed.inputs, discovered, &settings);
        let built = started.elapsed();
        let mut reports: Vec<InvalidInput> =
            observed.invalid.iter().chain(&skipped).cloned().collect();
        reports.sort();
        self.report(reports.iter());
        self.warn(&observed.warnings);
        self.reports.send_if_modified(|current| {
            let changed = *current != reports;
            *current = reports;
            changed
        });
        if self.mesh.as_deref() == Some(&mesh) {
            return None;
        }
        let version = self
            .snapshot
            .as_ref()
            .map_or(1, |previous| previous.version + 1);
        let started = std::time::Instant::now();
        let resources = translate_from(&mesh, self.mesh.as_deref());
        let translated = started.elapsed();
        let started = std::time::Instant::now();
        match Snapshot::new(version, &resources, self.snapshot.as_deref()) {
            Ok(snapshot) => {
                let packed = started.elapsed();
                tracing::info!(
                    version,
                    destinations = mesh.destinations.len(),
                    build = ?built,
                    translate = ?translated,
                    snapshot = ?packed,
                    "snapshot published"
                );
                for (stage, took) in [
                    ("build", built),
                    ("translate", translated),
                    ("snapshot", packed),
                ] {
                    let label = StageLabel {
                        stage: stage.to_string(),
                    };
                    self.metrics
                        .rebuild_seconds
                        .get_or_create(&label)
                        .set(took.as_secs_f64());
                }
                self.metrics.snapshots.inc();
                let snapshot = Arc::new(snapshot);
                self.snapshot = Some(Arc::clone(&snapshot));
                let mesh = Arc::new(mesh);
                self.mesh = Some(Arc::clone(&mesh));
                self.published.send_replace(Some(mesh));
                Some(snapshot)
            }
            Err(error) => {
                tracing::error!(%error, "inconsistent configuration; the previous snapshot stays served");
                self.metrics.snapshot_errors.inc();
                None
            }
        }
    }

    fn report<'a>(&mut self, invalid: impl Iterator<Item = &'a InvalidInput>) {
        let mut counts = BTreeMap::<String, i64>::new();
        for input in invalid {
            tracing::warn!(origin = %input.origin, kind = %input.kind, object = input.object.as_deref().unwrap_or("-"), reason = %input.reason, "skipped invalid input");
            *counts.entry(input.kind.clone()).or_default() += 1;
        }
        let gauges = &self.metrics.invalid_inputs;
        set_by_kind(gauges, &mut self.invalid_kinds, counts);
    }

    /// Reports what was read past in objects that are served all the same.
    fn warn(&mut self, warnings: &[InvalidInput]) {
        let mut counts = BTreeMap::<String, i64>::new();
        for warning in warnings {
            tracing::warn!(origin = %warning.origin, kind = %warning.kind, object = warning.object.as_deref().unwrap_or("-"), reason = %warning.reason, "ignored part of an input");
            *counts.entry(warning.kind.clone()).or_default() += 1;
        }
        let gauges = &self.metrics.input_warnings;
        set_by_kind(gauges, &mut self.warning_kinds, counts);
    }
}

/// Sets each kind's gauge to its count, and to 0 for the kinds counted before but not now.
fn set_by_kind(
    gauges: &Family<KindLabel, Gauge>,
    seen: &mut BTreeSet<String>,
    counts: BTreeMap<String, i64>,
) {
    for kind in seen.iter().chain(counts.keys()) {
        let gauge = gauges.get_or_create(&KindLabel { kind: kind.clone() });
        gauge.set(counts.get(kind).copied().unwrap_or(0));
    }
    seen.extend(counts.into_keys());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hosts_trust_the_private_cas_and_the_system_roots() {
        let private = TrustBundle {
            name: PRIVATE_CA_BUNDLE.to_string(),
            pem: "PRIVATE\n".to_string(),
            sources: vec!["private.pem".to_string()],
        };
        let mut settings = Settings {
            system_roots: Some(Arc::from("ROOTS\n")),
            ..Settings::default()
        };
        settings
            .bundles
            .insert(PRIVATE_CA_BUNDLE.to_string(), private);
        let with = |settings: &Settings| {
            let pipeline = Pipeline::new(settings.clone(), Arc::default(), Duration::ZERO);
            pipeline.settings_with(&TrustState::default()).bundles
        };

        let bundles = with(&settings);
        let joined = &bundles[UNKNOWN_HOSTS_BUNDLE];
        assert_eq!(joined.pem, "PRIVATE\nROOTS\n");
        assert_eq!(
            joined.sources,
            ["private.pem", crate::model::DEFAULT_SYSTEM_CA_FILE]
        );
        assert_eq!(bundles[PRIVATE_CA_BUNDLE].pem, "PRIVATE\n");

        settings.unknown_hosts = UnknownHosts::Deny;
        assert!(!with(&settings).contains_key(UNKNOWN_HOSTS_BUNDLE));
        // Without a private CA, unknown hosts use the Envoy container's system roots as they are.
        let only_roots = Settings {
            system_roots: Some(Arc::from("ROOTS\n")),
            ..Settings::default()
        };
        assert!(with(&only_roots).is_empty());
    }
}
