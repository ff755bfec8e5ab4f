use clap::Parser;
use lattice_xds::cli::{self, Cli, Command, GrpcHealthCommand, LoadtestCommand, PolicyCommand};
use lattice_xds::{
    bootstrap, check, controller, emulator, grpc_health, loadtest, policy, proxy_status, redirect,
    signer, validate,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    lattice_xds::logging::init(tracing_subscriber::EnvFilter::new(&cli.log), cli.log_format);
    if let Command::Policy(PolicyCommand::Check(args)) = cli.command {
        return match policy::check::run(&args.into()) {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => std::process::ExitCode::from(1),
            Err(error) => {
                eprintln!(
                    "lattice-xds: {}",
                    lattice_xds::logging::causes(error.as_ref())
                );
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Validate(args) = cli.command {
        let report = match validate::validate(&args.dir, &args.settings()) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("lattice-xds: {}", lattice_xds::logging::causes(&error));
                return std::process::ExitCode::from(2);
            }
        };
        if let Err(error) = args.output.output.print(&report, || report.text(&args.dir)) {
            eprintln!("lattice-xds: {error}");
        }
        return match report.clean() {
            true => std::process::ExitCode::SUCCESS,
            false => std::process::ExitCode::from(1),
        };
    }
    let result = match cli.command {
        Command::Policy(_) | Command::Validate(_) => unreachable!("handled above"),
        Command::Controller(args) => match args.into_config() {
            Ok(config) => controller::run(config).await,
            Err(error) => Err(error),
        },
        Command::Bootstrap(args) => {
            let output = args.output.clone();
            args.install_module()
                .and_then(|()| args.into_config())
                .and_then(|config| bootstrap::write(&config, output.as_deref()))
        }
        Command::ProxyStatus(args) => proxy_status::run(&args.into()).await,
        Command::Loadtest(LoadtestCommand::ExtProc(args)) => {
            match loadtest::ext_proc(&args.into()).await {
                Ok(report) => {
                    cli::print(&report.table());
                    match report.unsigned() {
                        0 => Ok(()),
                        unsigned => Err(anyhow::anyhow!(
                            "{unsigned} requests were let through without a signature"
                        )),
                    }
                }
                Err(error) => Err(error),
            }
        }
        Command::GrpcHealth(GrpcHealthCommand::Check(args)) => {
            match grpc_health::check(&args.target, &args.authority, &args.service).await {
                Ok(tonic_health::ServingStatus::Serving) => {
                    cli::print("SERVING\n");
                    Ok(())
                }
                Ok(status) => Err(anyhow::anyhow!("{} is {status:?}", args.authority)),
                Err(error) => Err(error),
            }
        }
        Command::GrpcHealth(GrpcHealthCommand::Serve(args)) => {
            grpc_health::serve(args.listen, &args.services).await
        }
        Command::Check(args) => match args.into_config() {
            Ok(config) => check::run(&config).await,
            Err(error) => Err(error),
        },
        Command::EmulateLattice(args) => emulator::run(args.into()).await,
        Command::Signer(args) => signer::run(args.into()).await,
        Command::Redirect(args) => {
            let print = args.print;
            let config = args.into();
            if print {
                cli::print(&redirect::render(&config, redirect::Family::Ipv4));
                cli::print(&redirect::render(&config, redirect::Family::Ipv6));
                Ok(())
            } else {
                redirect::apply(&config)
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "lattice-xds: {}",
                lattice_xds::logging::causes(error.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}
