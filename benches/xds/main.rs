//! `make bench-xds`: the controller against go-control-plane under the same sidecar-like load,
//! side by side in one run. For each route count the controller's resources are captured once
//! (and once more after one route is added) so the go-control-plane peer serves exactly the
//! same bytes. Then, round after round with the order alternating, each server is started
//! fresh, S streams connect (each on its own connection, subscribing and ACKing as Envoy does),
//! one destination is added, and the script records:
//!
//! - initial sync: connecting until every stream holds the route configuration;
//! - push: the change until every stream holds the new one (p50, p99, max over streams);
//! - server RSS idle, with the streams, at the push's peak (sampled every 5 ms), and per
//!   stream; server CPU seconds for the push.
//!
//! Prints a Markdown table of medians over the rounds, with the ratio of the two servers.
//!
//! `on-demand` streams are incremental with virtual hosts on demand (the controller runs with
//! `--on-demand-hosts true`; the peer, which has no such mode, is measured on `delta`). Even
//! streams hold the added host's virtual host from the start (the fallback's, before the route
//! exists) and one destination's; odd streams one destination's alone. The push is measured
//! over the even streams, and a line says how many odd streams were sent anything.
//!
//!   cargo bench --bench xds -- --peer PATH [--routes 1000,10000] [--streams 1000]
//!       [--protocols delta,sotw] [--rounds 3]
//!
//! With `--soak SECONDS` it runs only the soak instead (see `soak.rs`), on the first route
//! count, and needs no peer.

mod client;
mod soak;
mod targets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use client::{Progress, Protocol};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use targets::Target;

#[derive(Parser)]
struct Args {
    /// The go-control-plane peer (scripts/build-go-peer.sh prints its path).
    #[arg(long, required_unless_present = "soak")]
    peer: Option<PathBuf>,
    /// Route counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    routes: Vec<usize>,
    /// Streams per measurement.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    #[arg(long, value_delimiter = ',', default_value = "delta,sotw", value_parser = protocol)]
    protocols: Vec<Protocol>,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Route counts for the translation measurement (start to first snapshot, one route's
    /// change to the next, RSS), comma-separated; `0` skips it.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000")]
    translate: Vec<usize>,
    /// Instead of the comparison, soak the controller with `--streams` streams and a change
    /// every second for this many seconds after a minute's warm-up.
    #[arg(long)]
    soak: Option<u64>,
    /// Cargo passes `--bench` to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "delta" => Ok(Protocol::Delta),
        "sotw" => Ok(Protocol::Sotw),
        "on-demand" => Ok(Protocol::OnDemand),
        other => Err(format!("{other:?} is not delta, sotw or on-demand")),
    }
}

/// One measurement of one server.
#[derive(Clone, Debug, Default)]
struct Sample {
    initial_sync: f64,
    push_p50: f64,
    push_p99: f64,
    push_max: f64,
    rss_idle: f64,
    rss_streams: f64,
    /// The highest RSS sampled (every 5 ms) from the change to every stream holding it.
    rss_push_peak: f64,
    cpu_push: f64,
    /// Streams that do not hold the changed host but were sent something (on demand).
    others_pushed: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // LATTICE_XDS_BENCH_KEEP=1 keeps the manifests, resource files and server logs.
    let dir = tempfile::tempdir()?;
    let (work, _removed_on_exit) = if std::env::var_os("LATTICE_XDS_BENCH_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("keeping {}", kept.display());
        (kept, None)
    } else {
        (dir.path().to_path_buf(), Some(dir))
    };
    let work = work.as_path();
    if let Some(seconds) = args.soak {
        let routes = args.routes.first().copied().unwrap_or(1000);
        return soak::run(routes, args.streams, Duration::from_secs(seconds), work).await;
    }
    let peer = args
        .peer
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--peer is needed"))?;
    let translate: Vec<usize> = args.translate.iter().copied().filter(|n| *n > 0).collect();
    if !translate.is_empty() {
        println!(
            "| routes | start → first snapshot | one route added → next snapshot | that rebuild (build + translate + snapshot) | controller RSS | route configuration |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for &routes in &translate {
            translation(routes, work).await?;
        }
        println!();
    }
    println!(
        "| routes | streams | protocol | server | initial sync | push p50 | push p99 | push max | RSS idle | RSS with streams | RSS at the push's peak | per stream | CPU per push |"
    );
    println!("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &routes in &args.routes {
        let manifests = work.join(format!("routes-{routes}"));
        let (before, after) = capture(&manifests, routes, work).await?;
        for &protocol in &args.protocols {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            for round in 0..args.rounds {
                for peer_first in [round % 2 == 1, round % 2 == 0] {
                    let sample = if peer_first {
                        let target = targets::peer(peer, &before, &after).await?;
                        let theirs_protocol = match protocol {
                            Protocol::OnDemand => Protocol::Delta,
                            other => other,
                        };
                        let sample = measure(target, theirs_protocol, args.streams, routes).await?;
                        theirs.push(sample.clone());
                        sample
                    } else {
                        targets::manifests(&manifests, routes)?;
                        let on_demand = protocol == Protocol::OnDemand;
                        let target = targets::controller(&manifests, work, on_demand).await?;
                        let sample = measure(target, protocol, args.streams, routes).await?;
                        ours.push(sample.clone());
                        sample
                    };
                    eprintln!("round {round} {protocol} peer={peer_first}: {sample:?}");
                }
            }
            let ours = median(&ours);
            let theirs = median(&theirs);
            row(routes, args.streams, protocol, "lattice-xds", &ours);
            row(routes, args.streams, protocol, "go-control-plane", &theirs);
            ratio_row(routes, args.streams, protocol, &ours, &theirs);
            if protocol == Protocol::OnDemand {
                println!(
                    "<!-- on-demand, {routes} routes: {} of {} streams that do not hold the added host were sent something -->",
                    ours.others_pushed,
                    args.streams / 2
                );
            }
        }
    }
    Ok(())
}

/// How the controller copes with `routes` routes: from its start to the first snapshot, from
/// one added route to the next snapshot, its RSS, and the size of the route configuration.
async fn translation(routes: usize, work: &Path) -> anyhow::Result<()> {
    let manifests = work.join(format!("translate-{routes}"));
    targets::manifests(&manifests, routes)?;
    let started = Instant::now();
    let target = targets::controller(&manifests, work, false).await?;
    targets::wait_until("the first snapshot", || async {
        target.snapshots().await.is_ok_and(|n| n >= 1)
    })
    .await?;
    let first = started.elapsed().as_secs_f64();
    let before = target.snapshots().await?;
    let changed = Instant::now();
    target.trigger().await?;
    targets::wait_until("the next snapshot", || async {
        target.snapshots().await.is_ok_and(|n| n > before)
    })
    .await?;
    let next = changed.elapsed().as_secs_f64();
    let mut stages = Vec::new();
    for stage in ["build", "translate", "snapshot"] {
        let name = format!("lattice_xds_rebuild_seconds{{stage=\"{stage}\"}}");
        stages.push(target.metric(&name).await? * 1000.0);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = target.rss()? as f64 / (1024.0 * 1024.0);
    let fetched = client::fetch_all(&target.xds).await?;
    let route_bytes: usize = fetched
        .iter()
        .filter(|response| response.type_url == lattice_xds::xds::type_url::ROUTE)
        .flat_map(|response| &response.resources)
        .map(|any| any.value.len())
        .sum();
    let rebuild: f64 = stages.iter().sum();
    println!(
        "| {routes} | {first:.2} s | {next:.2} s | {rebuild:.1} ms ({:.1} + {:.1} + {:.1}) | {rss:.0} MB | {:.1} MB |",
        stages[0],
        stages[1],
        stages[2],
        route_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// The controller's resources for `routes` routes, and after one more route, as files the
/// peer loads.
async fn capture(
    manifests: &Path,
    routes: usize,
    work: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    targets::manifests(manifests, routes)?;
    let target = targets::controller(manifests, work, false).await?;
    let before = work.join(format!("resources-{routes}.pb"));
    write_resources(&before, &client::fetch_all(&target.xds).await?)?;
    target.trigger().await?;
    let after = work.join(format!("resources-{routes}-added.pb"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let fetched = loop {
        let responses = client::fetch_all(&target.xds).await?;
        let needle = b"bench-added.example.com";
        let added = responses.iter().any(|response| {
            let mut values = response.resources.iter().map(|any| &any.value);
            values.any(|value| value.windows(needle.len()).any(|window| window == needle))
        });
        if added {
            break responses;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the added route was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    write_resources(&after, &fetched)?;
    Ok((before, after))
}

fn write_resources(
    path: &Path,
    responses: &[envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse],
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    for response in responses {
        response.encode_length_delimited(&mut bytes)?;
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Connects `streams` streams to `target`, waits for their sync, adds a destination and waits
/// until every stream has it.
async fn measure(
    target: Target,
    protocol: Protocol,
    streams: usize,
    routes: usize,
) -> anyhow::Result<Sample> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = target.rss()? as f64;
    let started = Instant::now();
    // Sidecars connect in waves, not all in one instant: 64 connections at a time.
    let holds_added = |n: usize| protocol != Protocol::OnDemand || n.is_multiple_of(2);
    let opens = (0..streams).map(|n| {
        let mut hosts = vec![format!("svc-{}.example.com", n % routes.max(1))];
        if holds_added(n) {
            hosts.push("bench-added.example.com".to_string());
        }
        client::open(&target.xds, protocol, format!("sidecar-{n}.bench"), hosts)
    });
    let progress: Vec<Arc<Progress>> = futures::stream::iter(opens)
        .buffered(64)
        .try_collect()
        .await?;
    let all_have = |count: u32| {
        let progress = progress.clone();
        move || {
            let done = (progress.iter().enumerate())
                .filter(|(n, _)| count < 2 || holds_added(*n))
                .all(|(_, p)| p.routes.load(Ordering::SeqCst) >= count);
            async move { done }
        }
    };
    if let Err(error) = targets::wait_until("every stream's initial sync", all_have(1)).await {
        let synced = progress
            .iter()
            .filter(|p| p.routes.load(Ordering::SeqCst) >= 1)
            .count();
        let mut ended = Vec::new();
        for p in &progress {
            if let Some(why) = p.ended.lock().await.clone() {
                ended.push(why);
            }
        }
        ended.sort();
        ended.dedup();
        anyhow::bail!("{error}: {synced} of {streams} streams synced; streams ended: {ended:?}");
    }
    let initial_sync = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_streams = target.rss()? as f64;
    let cpu_before = target.cpu_seconds()?;
    let peak = PeakRss::start(target.pid()?);
    let triggered = Instant::now();
    target.trigger().await?;
    targets::wait_until("every stream to hold the change", all_have(2)).await?;
    let rss_push_peak = peak.stop().await as f64;
    let mut latencies = Vec::with_capacity(streams);
    for (_, p) in progress.iter().enumerate().filter(|(n, _)| holds_added(*n)) {
        let last = p.last.lock().await.unwrap_or(triggered);
        latencies.push(last.saturating_duration_since(triggered).as_secs_f64());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_push = target.cpu_seconds()? - cpu_before;
    let others_pushed = (progress.iter().enumerate())
        .filter(|(n, p)| !holds_added(*n) && p.routes.load(Ordering::SeqCst) > 1)
        .count() as f64;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    drop(target);
    Ok(Sample {
        initial_sync,
        push_p50: at(0.5),
        push_p99: at(0.99),
        push_max: at(1.0),
        rss_idle,
        rss_streams,
        rss_push_peak,
        cpu_push,
        others_pushed,
    })
}

/// The highest RSS of a process, sampled every 5 ms until stopped.
struct PeakRss {
    stop: tokio::sync::oneshot::Sender<()>,
    sampler: tokio::task::JoinHandle<u64>,
}

impl PeakRss {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                peak = peak.max(lattice_xds::loadtest::rss_bytes(pid).unwrap_or(0));
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => return peak,
                }
            }
        });
        Self { stop, sampler }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.sampler.await.unwrap_or(0)
    }
}

/// The median of each field over the rounds.
fn median(samples: &[Sample]) -> Sample {
    let of = |field: fn(&Sample) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        if values.len().is_multiple_of(2) {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        }
    };
    Sample {
        initial_sync: of(|s| s.initial_sync),
        push_p50: of(|s| s.push_p50),
        push_p99: of(|s| s.push_p99),
        push_max: of(|s| s.push_max),
        rss_idle: of(|s| s.rss_idle),
        rss_streams: of(|s| s.rss_streams),
        rss_push_peak: of(|s| s.rss_push_peak),
        cpu_push: of(|s| s.cpu_push),
        others_pushed: of(|s| s.others_pushed),
    }
}

fn per_stream(sample: &Sample, streams: usize) -> f64 {
    (sample.rss_streams - sample.rss_idle).max(0.0) / streams as f64
}

fn row(routes: usize, streams: usize, protocol: Protocol, server: &str, s: &Sample) {
    const MB: f64 = 1024.0 * 1024.0;
    println!(
        "| {routes} | {streams} | {protocol} | {server} | {:.2} s | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} MB | {:.0} MB | {:.0} MB | {:.0} KB | {:.2} s |",
        s.initial_sync,
        s.push_p50 * 1e3,
        s.push_p99 * 1e3,
        s.push_max * 1e3,
        s.rss_idle / MB,
        s.rss_streams / MB,
        s.rss_push_peak / MB,
        per_stream(s, streams) / 1024.0,
        s.cpu_push,
    );
}

fn ratio_row(routes: usize, streams: usize, protocol: Protocol, ours: &Sample, theirs: &Sample) {
    let r = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}×", a / b)
        } else {
            "–".to_string()
        }
    };
    println!(
        "| {routes} | {streams} | {protocol} | ratio | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r(ours.initial_sync, theirs.initial_sync),
        r(ours.push_p50, theirs.push_p50),
        r(ours.push_p99, theirs.push_p99),
        r(ours.push_max, theirs.push_max),
        r(ours.rss_idle, theirs.rss_idle),
        r(ours.rss_streams, theirs.rss_streams),
        r(ours.rss_push_peak, theirs.rss_push_peak),
        r(per_stream(ours, streams), per_stream(theirs, streams)),
        r(ours.cpu_push, theirs.cpu_push),
    );
}
