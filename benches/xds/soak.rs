//! The soak: the controller serving `streams` streams (half Delta, half state of the world)
//! while one destination is replaced every second, for as long as asked. After a warm-up its
//! RSS is sampled every ten seconds; the run passes when every later sample stays within 10%
//! of the first, no stream ended, and every stream holds the last change.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use crate::client::{self, Progress, Protocol};
use crate::targets;

const WARM_UP: Duration = Duration::from_secs(60);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const CHANGE_EVERY: Duration = Duration::from_secs(1);
/// How far RSS may drift from the first sample after the warm-up.
const FLAT_WITHIN: f64 = 0.10;

pub async fn run(
    routes: usize,
    streams: usize,
    length: Duration,
    work: &Path,
) -> anyhow::Result<()> {
    let manifests = work.join(format!("soak-{routes}"));
    targets::manifests(&manifests, routes)?;
    let target = targets::controller(&manifests, work, false).await?;
    let opens = (0..streams).map(|n| {
        let protocol = if n % 2 == 0 {
            Protocol::Delta
        } else {
            Protocol::Sotw
        };
        client::open(
            &target.xds,
            protocol,
            format!("sidecar-{n}.soak"),
            Vec::new(),
        )
    });
    let progress: Vec<Arc<Progress>> = futures::stream::iter(opens)
        .buffered(64)
        .try_collect()
        .await?;
    targets::wait_until("every stream's initial sync", || {
        let done = progress
            .iter()
            .all(|p| p.routes.load(Ordering::SeqCst) >= 1);
        async move { done }
    })
    .await?;

    let started = Instant::now();
    let snapshots_before = target.snapshots().await?;
    let cpu_before = target.cpu_seconds()?;
    let mut changes = 0u64;
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut next_sample = WARM_UP;
    let mut ticker = tokio::time::interval(CHANGE_EVERY);
    let mut last_change = Instant::now();
    while started.elapsed() < WARM_UP + length {
        ticker.tick().await;
        replace(&manifests, changes)?;
        last_change = Instant::now();
        changes += 1;
        if started.elapsed() >= next_sample {
            samples.push((started.elapsed(), target.rss()?));
            next_sample += SAMPLE_EVERY;
        }
    }
    samples.push((started.elapsed(), target.rss()?));

    // Every stream must hold the last change: a route configuration after it.
    let caught_up = targets::wait_until("every stream to hold the last change", || {
        let progress = progress.clone();
        async move { behind(&progress, last_change).await == 0 }
    })
    .await;
    let behind = behind(&progress, last_change).await;
    let mut ended = 0;
    for p in &progress {
        if p.ended.lock().await.is_some() {
            ended += 1;
        }
    }
    let snapshots = target.snapshots().await? - snapshots_before;
    let cpu = target.cpu_seconds()? - cpu_before;

    const MB: f64 = 1024.0 * 1024.0;
    let first = samples[0].1 as f64;
    let drift = |rss: u64| (rss as f64 - first) / first;
    let worst = samples
        .iter()
        .map(|(_, rss)| drift(*rss))
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or_default();
    let flat = worst.abs() <= FLAT_WITHIN;
    println!("| minutes after warm-up | controller RSS | from the first sample |");
    println!("|---:|---:|---:|");
    for (at, rss) in samples.iter().step_by(6) {
        println!(
            "| {:.0} | {:.1} MB | {:+.1}% |",
            (at.saturating_sub(WARM_UP)).as_secs_f64() / 60.0,
            *rss as f64 / MB,
            drift(*rss) * 100.0
        );
    }
    println!();
    println!(
        "{routes} routes, {streams} streams (half Delta, half SotW), {changes} changes in {:.0} s \
         (warm-up {} s), {snapshots} snapshots, controller CPU {cpu:.0} s ({:.0}% of a core); \
         RSS min {:.1} MB, max {:.1} MB, largest drift {:+.1}% ({}); streams ended: {ended}; \
         streams behind the last change: {behind}.",
        started.elapsed().as_secs_f64(),
        WARM_UP.as_secs(),
        100.0 * cpu / started.elapsed().as_secs_f64(),
        samples
            .iter()
            .map(|(_, rss)| *rss)
            .min()
            .unwrap_or_default() as f64
            / MB,
        samples
            .iter()
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or_default() as f64
            / MB,
        worst * 100.0,
        if flat {
            "flat within 10%"
        } else {
            "NOT flat within 10%"
        },
    );
    caught_up?;
    anyhow::ensure!(ended == 0, "{ended} streams ended during the soak");
    anyhow::ensure!(flat, "RSS drifted {:+.1}% after the warm-up", worst * 100.0);
    Ok(())
}

/// How many streams hold no route configuration sent after `change`.
async fn behind(progress: &[Arc<Progress>], change: Instant) -> usize {
    let mut behind = 0;
    for p in progress {
        if p.last.lock().await.is_none_or(|at| at < change) {
            behind += 1;
        }
    }
    behind
}

/// Replaces the soak's own destination by the next one: one cluster goes, one comes, and the
/// route configuration changes.
fn replace(manifests: &Path, change: u64) -> anyhow::Result<()> {
    let part = manifests.join(".soak.yaml.part");
    std::fs::write(&part, targets::route(&format!("soak-{change}")))?;
    std::fs::rename(part, manifests.join("soak.yaml"))?;
    Ok(())
}
