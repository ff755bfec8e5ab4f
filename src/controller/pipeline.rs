//! Inputs → mesh → resources → snapshot. Each change of the provider's output is allowed to
//! settle, then rebuilt; invalid objects are reported and skipped, an inconsistent result is
//! reported and the previous snapshot stays served.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::{KindLabel, Metrics};
use crate::model::{Mesh, Settings};
use crate::provider::{InvalidInput, Observed, lattice};
use crate::translate::translate;
use crate::xds::snapshot::Snapshot;

pub struct Pipeline {
    settings: Settings,
    metrics: Arc<Metrics>,
    debounce: Duration,
    mesh: Option<Mesh>,
    snapshot: Option<Arc<Snapshot>>,
    invalid_kinds: BTreeSet<String>,
}

impl Pipeline {
    pub fn new(settings: Settings, metrics: Arc<Metrics>, debounce: Duration) -> Self {
        Self {
            settings,
            metrics,
            debounce,
            mesh: None,
            snapshot: None,
            invalid_kinds: BTreeSet::new(),
        }
    }

    /// Rebuilds after every change of `observed` until either channel closes.
    pub async fn run(
        mut self,
        mut observed: watch::Receiver<Option<Observed>>,
        snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    ) {
        loop {
            if observed.changed().await.is_err() {
                return;
            }
            // Let a burst of changes settle into one rebuild (istiod's debounce, 100 ms).
            tokio::time::sleep(self.debounce).await;
            let Some(current) = observed.borrow_and_update().clone() else {
                continue;
            };
            if let Some(snapshot) = self.rebuild(&current)
                && snapshots.send(Some(snapshot)).is_err()
            {
                return;
            }
        }
    }

    /// A new snapshot when the mesh changed and the result is consistent.
    fn rebuild(&mut self, observed: &Observed) -> Option<Arc<Snapshot>> {
        let (mesh, skipped) = lattice::build(&observed.inputs, &self.settings);
        self.report(observed.invalid.iter().chain(&skipped));
        if self.mesh.as_ref() == Some(&mesh) {
            return None;
        }
        let version = self
            .snapshot
            .as_ref()
            .map_or(1, |previous| previous.version + 1);
        match Snapshot::new(version, &translate(&mesh), self.snapshot.as_deref()) {
            Ok(snapshot) => {
                tracing::info!(
                    version,
                    destinations = mesh.destinations.len(),
                    "snapshot published"
                );
                self.metrics.snapshots.inc();
                let snapshot = Arc::new(snapshot);
                self.snapshot = Some(Arc::clone(&snapshot));
                self.mesh = Some(mesh);
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
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for input in invalid {
            tracing::warn!(origin = %input.origin, kind = %input.kind, object = input.object.as_deref().unwrap_or("-"), reason = %input.reason, "skipped invalid input");
            *counts.entry(input.kind.clone()).or_default() += 1;
        }
        for kind in self.invalid_kinds.iter().chain(counts.keys()) {
            let gauge = self
                .metrics
                .invalid_inputs
                .get_or_create(&KindLabel { kind: kind.clone() });
            gauge.set(counts.get(kind).copied().unwrap_or(0));
        }
        self.invalid_kinds.extend(counts.into_keys());
    }
}
