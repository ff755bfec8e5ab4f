//! Kubernetes Events for skipped objects: `kubectl describe httproute` shows why a route is not
//! served. One Event per problem per object (by uid), written by the leader only; a problem
//! that is fixed and comes back is reported again.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Stores, leader};
use crate::metrics::Metrics;
use crate::provider::InvalidInput;

/// The `reportingController` of every Event this controller writes.
pub const REPORTING_CONTROLLER: &str = "lattice-xds";

/// The Event writer of this replica, `instance`.
pub fn recorder(client: Client, instance: String) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: REPORTING_CONTROLLER.to_string(),
            instance: Some(instance),
        },
    )
}

/// Writes Events for the pipeline's reports while `leader` is true, until `shutdown`.
pub async fn run(
    client: Client,
    instance: String,
    mut reports: watch::Receiver<Vec<InvalidInput>>,
    stores: watch::Receiver<Option<Stores>>,
    mut leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let recorder = recorder(client, instance);
    // (uid, reason) of the problems already reported.
    let mut written: BTreeSet<(String, String)> = BTreeSet::new();
    let mut failed = false;
    loop {
        let input = async { reports.changed().await.is_ok() };
        let Some(leading) = leader::next_round(input, &mut leader, failed, &shutdown).await else {
            return;
        };
        failed = false;
        if !leading {
            written.clear();
            continue;
        }
        let Some(stores) = stores.borrow().clone() else {
            continue;
        };
        let current = reports.borrow_and_update().clone();
        let mut still = BTreeSet::new();
        for report in &current {
            let Some(object) = &report.object else {
                continue;
            };
            let Some(reference) = stores.reference(&report.kind, object) else {
                continue;
            };
            let key = (
                reference.uid.clone().unwrap_or_default(),
                report.reason.clone(),
            );
            still.insert(key.clone());
            if written.contains(&key) {
                continue;
            }
            let event = Event {
                type_: EventType::Warning,
                reason: "Skipped".to_string(),
                note: Some(truncate(&report.reason, 1000)),
                action: "Translate".to_string(),
                secondary: None,
            };
            match recorder.publish(&event, &reference).await {
                Ok(()) => {
                    metrics.events_written.inc();
                    written.insert(key);
                }
                Err(error) => {
                    tracing::warn!(%error, object, "cannot write an Event; retrying");
                    metrics.kubernetes_write_errors.inc();
                    failed = true;
                }
            }
        }
        written.retain(|key| still.contains(key));
    }
}

/// At most `limit` bytes, cut at a character boundary (Event notes are limited to 1 kB).
pub(super) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
