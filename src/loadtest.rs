//! `lattice-xds loadtest ext-proc`: drives a signer's ext_proc service as Envoy does: one gRPC
//! stream per request on a shared HTTP/2 connection, request headers only, a fixed number of
//! requests in flight. Runs for a duration or a number of requests, prints a progress line each
//! second and a final table: requests per second, latency percentiles, answers by kind, and the
//! signer's CPU per request and RSS when its PID is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpHeaders, ProcessingRequest, ProcessingResponse, processing_request, processing_response,
};
use tokio::sync::Mutex;
use tonic::transport::Channel;

/// What to drive and for how long.
#[derive(Clone, Debug)]
pub struct ExtProcLoad {
    /// The signer's ext_proc address.
    pub target: SocketAddr,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many requests, whichever comes first.
    pub requests: Option<u64>,
    /// The `:authority` of every request (a VPC Lattice service's host name).
    pub authority: String,
    /// The signer's process, for its CPU and memory.
    pub pid: Option<u32>,
}

/// How the signer answered one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// "Continue", with an AWS authorization set.
    Signed,
    /// An immediate response with this HTTP status (a refusal).
    Refused(u32),
    /// "Continue" without a signature: what a signer must never do.
    Unsigned,
    /// The stream failed with this gRPC status.
    Failed(String),
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    pub requests: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
    answers: BTreeMap<Answer, u64>,
    /// Signer CPU seconds over the run, and its RSS in bytes at the end.
    signer: Option<(f64, u64)>,
}

impl Report {
    /// Requests answered "continue" without a signature.
    pub fn unsigned(&self) -> u64 {
        self.answers.get(&Answer::Unsigned).copied().unwrap_or(0)
    }

    fn percentile(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }

    /// The final table, in Markdown.
    pub fn table(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let mut out = String::new();
        out.push_str(
            "| requests | seconds | requests/s | p50 (ms) | p90 (ms) | p99 (ms) | p99.9 (ms) | signer CPU/request (µs) | signer RSS |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let (cpu, rss) = match self.signer {
            Some((cpu, rss)) if self.requests > 0 => (
                format!("{:.1}", cpu / self.requests as f64 * 1e6),
                format!("{:.1} MB", rss as f64 / (1024.0 * 1024.0)),
            ),
            _ => ("–".to_string(), "–".to_string()),
        };
        let _ = writeln!(
            out,
            "| {} | {seconds:.1} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {cpu} | {rss} |",
            self.requests,
            self.requests as f64 / seconds.max(f64::EPSILON),
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(0.999),
        );
        out.push('\n');
        out.push_str("| answer | requests |\n|---|---:|\n");
        for (answer, count) in &self.answers {
            let name = match answer {
                Answer::Signed => "signed".to_string(),
                Answer::Refused(status) => format!("refused with HTTP {status}"),
                Answer::Unsigned => "continued UNSIGNED".to_string(),
                Answer::Failed(code) => format!("gRPC error {code}"),
            };
            let _ = writeln!(out, "| {name} | {count} |");
        }
        out
    }
}

/// Runs the load and returns what it saw.
pub async fn ext_proc(load: &ExtProcLoad) -> anyhow::Result<Report> {
    anyhow::ensure!(load.concurrency > 0, "--concurrency must be at least 1");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", load.target))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to the signer's ext_proc at {}", load.target))?;
    let cpu_before = match load.pid {
        Some(pid) => Some(cpu_seconds(pid)?),
        None => None,
    };
    let started = Instant::now();
    let deadline = started + load.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(progress(started, Arc::clone(&done), Arc::clone(&failures)));
    let results = Arc::new(Mutex::new((Vec::new(), BTreeMap::new())));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let client = ExternalProcessorClient::new(channel.clone());
        let (issued, done, failures) = (issued.clone(), done.clone(), failures.clone());
        let (results, authority, limit) = (results.clone(), load.authority.clone(), load.requests);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut answers: BTreeMap<Answer, u64> = BTreeMap::new();
            loop {
                let within_count =
                    limit.is_none_or(|limit| issued.fetch_add(1, Ordering::Relaxed) < limit);
                if !within_count || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let answer = one_request(client.clone(), &authority).await;
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                latencies.push(micros);
                if answer != Answer::Signed {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                *answers.entry(answer).or_default() += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            let mut shared = results.lock().await;
            shared.0.extend(latencies);
            for (answer, count) in answers {
                *shared.1.entry(answer).or_default() += count;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    progress.abort();
    let signer = match (load.pid, cpu_before) {
        (Some(pid), Some(before)) => Some((cpu_seconds(pid)? - before, rss_bytes(pid)?)),
        _ => None,
    };
    let (mut latencies, answers) = std::mem::take(&mut *results.lock().await);
    latencies.sort_unstable();
    Ok(Report {
        requests: done.load(Ordering::Relaxed),
        elapsed,
        latencies,
        answers,
        signer,
    })
}

/// One request's headers, as Envoy sends them, and the signer's answer.
async fn one_request(mut client: ExternalProcessorClient<Channel>, authority: &str) -> Answer {
    let header = |key: &str, value: &str| HeaderValue {
        key: key.to_string(),
        raw_value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    let message = ProcessingRequest {
        request: Some(processing_request::Request::RequestHeaders(HttpHeaders {
            headers: Some(HeaderMap {
                headers: vec![
                    header(":method", "GET"),
                    header(":scheme", "https"),
                    header(":authority", authority),
                    header(":path", "/orders?customer=42&limit=10"),
                    header("accept", "application/json"),
                    header("user-agent", "lattice-xds-loadtest"),
                ],
            }),
            end_of_stream: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    let answer = async {
        let mut responses = client
            .process(futures::stream::iter([message]))
            .await?
            .into_inner();
        let first = responses.message().await?;
        // The request side is already closed; read the stream to its end, as Envoy does,
        // rather than resetting it (h2 limits how many streams a client may reset).
        while responses.message().await?.is_some() {}
        Ok::<_, tonic::Status>(first)
    };
    match answer.await {
        Ok(Some(response)) => classify(response),
        Ok(None) => Answer::Failed("stream ended without an answer".to_string()),
        Err(status) => Answer::Failed(format!("{:?}", status.code())),
    }
}

fn classify(response: ProcessingResponse) -> Answer {
    match response.response {
        Some(processing_response::Response::RequestHeaders(headers)) => {
            let signed = headers
                .response
                .and_then(|common| common.header_mutation)
                .is_some_and(|mutation| {
                    mutation.set_headers.iter().any(|option| {
                        option.header.as_ref().is_some_and(|header| {
                            header.key == "authorization" && header.raw_value.starts_with(b"AWS4-")
                        })
                    })
                });
            if signed {
                Answer::Signed
            } else {
                Answer::Unsigned
            }
        }
        Some(processing_response::Response::ImmediateResponse(immediate)) => {
            let status = immediate.status.map_or(0, |status| status.code);
            Answer::Refused(u32::try_from(status).unwrap_or(0))
        }
        other => Answer::Failed(format!("unexpected answer {other:?}")),
    }
}

/// A line on standard error each second: requests so far, the last second's rate, failures.
async fn progress(started: Instant, done: Arc<AtomicU64>, failures: Arc<AtomicU64>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = 0;
    loop {
        ticker.tick().await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "{:>5.0} s  {now:>9} requests  {:>7}/s  {} not signed",
            started.elapsed().as_secs_f64(),
            now - last,
            failures.load(Ordering::Relaxed)
        );
        last = now;
    }
}

/// CPU seconds (user and system) the process has used.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // The fields after the command name (which may hold spaces) start with the state, field 3.
    let after = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .context("malformed /proc stat")?
        .iter()
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // USER_HZ is 100 on every Linux platform this runs on.
    Ok(ticks as f64 / 100.0)
}

/// The process's resident memory, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}
