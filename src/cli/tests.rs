use super::*;
use crate::controller::{ControllerConfig, Source};
use crate::model::PRIVATE_CA_BUNDLE;
use std::time::Duration;

fn controller(args: &[&str]) -> anyhow::Result<ControllerConfig> {
    let mut argv = vec!["lattice-xds", "controller", "--manifests", "examples"];
    argv.extend(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Controller(args) => args.into_config(),
        _ => unreachable!("parsed a controller command"),
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn ca_arns_and_the_refresh_period_are_parsed() {
    let config = controller(&[
        "--ca-arn=arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/one",
        "--ca-arn=arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/two",
        "--trust-refresh=90s",
        "--aws-endpoint-url=http://127.0.0.1:5000",
    ])
    .unwrap();
    let regions: Vec<&str> = config
        .trust
        .cas
        .iter()
        .map(|ca| ca.region.as_str())
        .collect();
    assert_eq!(regions, ["eu-west-1", "us-east-1"]);
    assert_eq!(config.trust.refresh, Duration::from_secs(90));
    assert_eq!(
        config.trust.endpoint_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert_eq!(
        controller(&[]).unwrap().trust.refresh,
        Duration::from_secs(300)
    );
}

#[test]
fn a_bad_ca_arn_or_period_is_a_clear_error() {
    let error = controller(&["--ca-arn=arn:aws:acm:eu-west-1:1:certificate/x"]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is not an ACM PCA certificate authority ARN"),
        "{error}"
    );
    let error = controller(&["--trust-refresh=soon"]).unwrap_err();
    assert!(error.to_string().contains("--trust-refresh"), "{error}");
}

#[test]
fn system_roots_join_the_private_bundle_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let private = write(dir.path(), "private.pem", PEM);
    let roots = write(dir.path(), "roots.pem", &PEM.replace("MIIB", "ROOT"));
    let system = format!("--system-ca-file={roots}");
    let ca_file = format!("--ca-file={private}");
    let without = controller(&[&ca_file, &system]).unwrap();
    let bundle = &without.settings.bundles[PRIVATE_CA_BUNDLE];
    assert!(!bundle.pem.contains("ROOT"));
    let with = controller(&[&ca_file, &system, "--trust-system-roots"]).unwrap();
    let bundle = &with.settings.bundles[PRIVATE_CA_BUNDLE];
    assert!(
        bundle.pem.contains("MIIB") && bundle.pem.contains("ROOT"),
        "{}",
        bundle.pem
    );
    assert_eq!(bundle.sources, [private, roots]);
    // Unknown hosts trust the private CAs and the system roots: the roots are read for them,
    // unless they are among the private CAs already or unknown hosts are denied.
    assert!(
        without
            .settings
            .system_roots
            .as_deref()
            .is_some_and(|pem| pem.contains("ROOT"))
    );
    assert!(with.settings.system_roots.is_none());
    let denied = controller(&[&ca_file, &system, "--unknown-hosts=deny"]).unwrap();
    assert!(denied.settings.system_roots.is_none());
    let missing = controller(&[
        "--trust-system-roots",
        "--system-ca-file=/nonexistent/roots.pem",
    ])
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read the system CA file /nonexistent/roots.pem"),
        "{missing}"
    );
}

fn parse(argv: &[&str]) -> Result<ControllerConfig, String> {
    let mut full = vec!["lattice-xds", "controller"];
    full.extend(argv);
    match Cli::try_parse_from(full)
        .map_err(|error| error.to_string())?
        .command
    {
        Command::Controller(args) => args.into_config().map_err(|error| error.to_string()),
        _ => unreachable!("parsed a controller command"),
    }
}

#[test]
fn the_source_is_a_directory_or_the_kubernetes_api_never_both_or_neither() {
    let neither = parse(&[]).unwrap_err();
    assert!(
        neither.contains("--manifests") && neither.contains("--kubernetes"),
        "{neither}"
    );
    let both = parse(&["--manifests", "examples", "--kubernetes"]).unwrap_err();
    assert!(both.contains("cannot be used with"), "{both}");
    let without = parse(&["--manifests", "examples", "--kubeconfig", "k"]).unwrap_err();
    assert!(without.contains("--kubernetes"), "{without}");

    let config = parse(&["--kubernetes", "--kubeconfig", "/tmp/k", "--instance", "a"]).unwrap();
    let Source::Kubernetes(kube) = config.source else {
        panic!("not the Kubernetes source");
    };
    assert_eq!(
        kube.kubeconfig.as_deref(),
        Some(std::path::Path::new("/tmp/k"))
    );
    assert_eq!(kube.instance, "a");
    assert_eq!(kube.lease.name, "lattice-xds-controller");
    assert_eq!(kube.lease.duration, Duration::from_secs(15));
    assert_eq!(kube.ca_bundle_namespaces, "lattice-xds/ca-bundle=true");
    assert_eq!(config.settings.gateway_class, "amazon-vpc-lattice");
}

#[test]
fn a_ca_file_with_a_private_key_is_refused_and_only_certificates_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
    let combined = write(dir.path(), "combined.pem", &format!("{PEM}{key}"));
    let error = controller(&[&format!("--ca-file={combined}")]).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&combined), "{message}");
    assert!(message.contains("private key"), "{message}");
    assert!(!message.contains("c2VjcmV0"), "{message}");
    let ec_key = key.replace("PRIVATE KEY", "EC PRIVATE KEY");
    let ec = write(dir.path(), "ec.pem", &format!("{ec_key}{PEM}"));
    assert!(controller(&[&format!("--ca-file={ec}")]).is_err());

    let annotated = write(
        dir.path(),
        "annotated.pem",
        &format!(
            "# the team's CA\nsubject=CN=team\n{PEM}-----BEGIN PUBLIC KEY-----\nUFVC\n-----END PUBLIC KEY-----\n"
        ),
    );
    let config = controller(&[&format!("--ca-file={annotated}")]).unwrap();
    assert_eq!(config.settings.bundles[PRIVATE_CA_BUNDLE].pem, PEM);
    let empty = write(dir.path(), "empty.pem", "# nothing here\n");
    let error = controller(&[&format!("--ca-file={empty}")]).unwrap_err();
    assert!(
        format!("{error:#}").contains("holds no PEM certificate"),
        "{error:#}"
    );
}

/// The README promises that every flag can also be set as `LATTICE_XDS_<FLAG>`: walk every
/// subcommand of both binaries' parsers and check each flag's environment twin and its name.
#[test]
fn every_flag_has_its_environment_twin() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let wanted = format!("LATTICE_XDS_{}", long.replace('-', "_").to_uppercase());
            match arg.get_env() {
                Some(env) if env.to_str() == Some(wanted.as_str()) => {}
                Some(env) => missing.push(format!("{path} --{long}: {env:?}, not {wanted}")),
                None => missing.push(format!("{path} --{long}: no {wanted}")),
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "lattice-xds", &mut missing);
    assert!(
        missing.is_empty(),
        "flags without their environment twin:\n{}",
        missing.join("\n")
    );
}

#[test]
fn signing_modes_and_algorithms_are_named_in_any_case() {
    use crate::model::{SigningAlgorithm, SigningMode};
    let config = controller(&["--signing", "EXT-PROC", "--signing-algorithm", "SigV4A"]).unwrap();
    assert_eq!(config.settings.signing.mode, SigningMode::ExtProc);
    assert_eq!(config.settings.signing.algorithm, SigningAlgorithm::SigV4a);
    let error = controller(&["--signing", "sign-it"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ext-proc") && error.contains("native"),
        "the error lists the modes: {error}"
    );
}

/// One rule for every flag that takes one of a set of names, in both binaries (the signer's
/// flags are shared): any case is accepted. The environment twins go through the same parsers.
#[test]
fn every_enum_flag_takes_its_names_in_any_case() {
    use clap::CommandFactory;
    fn walk(
        command: &clap::Command,
        path: &str,
        seen: &mut Vec<String>,
        refused: &mut Vec<String>,
    ) {
        for arg in command.get_arguments() {
            if !arg.get_action().takes_values() {
                continue;
            }
            let long = arg.get_long().unwrap_or_default();
            for value in arg.get_possible_values() {
                let upper = value.get_name().to_uppercase();
                // The flag alone, parsed as its command parses it.
                let probe = clap::Command::new("probe")
                    .no_binary_name(true)
                    .arg(arg.clone());
                let parsed = probe.try_get_matches_from([format!("--{long}"), upper.clone()]);
                seen.push(format!("--{long}"));
                if let Err(error) = parsed {
                    refused.push(format!("{path} --{long} {upper}: {error}"));
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), seen, refused);
        }
    }
    let (mut seen, mut refused) = (Vec::new(), Vec::new());
    walk(&Cli::command(), "lattice-xds", &mut seen, &mut refused);
    for flag in [
        "--signing",
        "--signing-algorithm",
        "--xds-protocol",
        "--xds-auth",
    ] {
        assert!(
            seen.iter().any(|name| name == flag),
            "{flag} lists no names: {seen:?}"
        );
    }
    assert!(
        refused.is_empty(),
        "refused in upper case:\n{}",
        refused.join("\n")
    );
}

#[test]
fn system_roots_pass_the_same_certificates_only_filter() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = write(
        dir.path(),
        "roots.pem",
        &format!("{PEM}-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n"),
    );
    let system = format!("--system-ca-file={keyed}");
    let error = controller(&[&system, "--trust-system-roots"]).unwrap_err();
    assert!(format!("{error:#}").contains("PRIVATE KEY"), "{error:#}");
}

#[test]
fn tracing_is_off_until_a_collector_is_named_and_its_values_are_checked() {
    let off = parse(&["--manifests", "examples"]).unwrap();
    assert_eq!(off.settings.tracing, None);
    let on = parse(&[
        "--manifests",
        "examples",
        "--trace-collector",
        "otel.observability:4317",
        "--trace-sampling",
        "0.25",
    ])
    .unwrap();
    let tracing = on.settings.tracing.expect("tracing");
    assert_eq!(tracing.collector, "otel.observability:4317");
    assert_eq!(tracing.sampled_per_million, 250_000);
    let no_port = parse(&["--manifests", "examples", "--trace-collector", "otel"]).unwrap_err();
    assert!(no_port.contains("is not HOST:PORT"), "{no_port}");
    let too_many = parse(&["--manifests", "examples", "--trace-sampling", "2"]).unwrap_err();
    assert!(
        too_many.contains("is not a number from 0 to 1"),
        "{too_many}"
    );
}

#[test]
fn a_duration_says_how_to_write_one() {
    let error = controller(&["--trust-refresh", "5"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "\"5\" is not a duration: a number and its unit, for example 500ms, 30s, 5m or 1h"
        ),
        "{error}"
    );
    let config = controller(&["--trust-refresh", "1m30s"]).unwrap();
    assert_eq!(config.trust.refresh, std::time::Duration::from_secs(90));
}

#[test]
fn old_flag_names_are_still_read() {
    let old = [
        vec!["lattice-xds", "signer", "--algorithm", "sigv4a"],
        vec![
            "lattice-xds",
            "controller",
            "--manifests",
            "examples",
            "--xds-tls-cert",
            "cert.pem",
            "--xds-tls-key",
            "key.pem",
            "--xds-tls-ca",
            "ca.pem",
        ],
    ];
    for argv in old {
        let parsed = Cli::try_parse_from(&argv);
        assert!(parsed.is_ok(), "{argv:?}: {:?}", parsed.err());
    }
    let help = <Cli as clap::CommandFactory>::command()
        .find_subcommand_mut("signer")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(help.contains("--signing-algorithm"), "{help}");
    assert!(
        !help.contains("--algorithm "),
        "the old name is not shown: {help}"
    );
}
