//! The signer alone, as each pod's sidecar runs it: the same code as `lattice-xds signer`,
//! without the controller, the webhook, the emulator, or the Kubernetes and ACM PCA clients,
//! and on one thread unless told otherwise. Every pod pays only for signing.

use std::process::ExitCode;

use clap::Parser;
use lattice_xds::signer::{self, SignerArgs};
use tracing_subscriber::filter::Targets;

/// Sign the pod's outgoing requests with its AWS credentials (the sidecar Envoy calls it over
/// ext_proc, or over HTTP in the Lua mode).
#[derive(Debug, Parser)]
#[command(name = "lattice-xds-signer", version)]
struct Cli {
    /// Log filter: a level, then `target=level` for any module (for example `info` or
    /// `warn,lattice_xds=debug`).
    #[arg(long, env = "LATTICE_XDS_LOG", default_value = "info")]
    log: Targets,
    /// Log lines as `text` (coloured on a terminal only) or `json` (one object per line).
    #[arg(
        long,
        env = "LATTICE_XDS_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    log_format: lattice_xds::logging::LogFormat,
    /// Threads that serve requests. One suits a sidecar: signing takes microseconds, and the
    /// pod's CPU limit, not the node's core count, bounds it.
    #[arg(long, env = "LATTICE_XDS_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,
    #[command(flatten)]
    signer: SignerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `Targets` rather than the controller's `EnvFilter`: the same directives without span and
    // field filters, and without a regex engine in every pod.
    lattice_xds::logging::init(cli.log, cli.log_format);
    let runtime = if cli.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.worker_threads)
            .enable_all()
            .build()
    };
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(signer::run(cli.signer.into())));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "lattice-xds-signer: {}",
                lattice_xds::logging::causes(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
