use clap::Parser;
use lattice_xds::cli::{Cli, Command};
use lattice_xds::{bootstrap, controller, proxy_status, signer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Two TLS backends are linked (the AWS SDK's and the Kubernetes client's); name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Controller(args) => match args.into_config() {
            Ok(config) => controller::run(config).await,
            Err(error) => Err(error),
        },
        Command::Bootstrap(args) => {
            print!("{}", bootstrap::render(&args.into()));
            Ok(())
        }
        Command::ProxyStatus(args) => proxy_status::run(&args.admin).await,
        Command::Signer(args) => signer::run(args.into()).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lattice-xds: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
