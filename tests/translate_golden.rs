//! Golden tests of the translation: each case under `tests/testdata/translate/<case>/` holds
//! `args` (controller flags, one per line), its manifests in `input/` (unless `--manifests`
//! names another directory), and the expected `listeners.yaml`, `routes.yaml`,
//! `clusters.yaml`, `secrets.yaml`, `invalid.yaml` (what was skipped) and, where anything
//! was, `warnings.yaml` (what was ignored in objects that are served). Set `LATTICE_XDS_UPDATE_GOLDEN=1` to
//! rewrite the expected files, then read the diff.

use std::path::{Path, PathBuf};

use clap::Parser;
use lattice_xds::cli::{Cli, Command};
use lattice_xds::controller::Source;
use lattice_xds::provider::{file, lattice};
use lattice_xds::translate::translate;
use lattice_xds::xds::json::message_to_json;

const CASES: &str = "tests/testdata/translate";

#[test]
fn translation_matches_golden_files() {
    let update = std::env::var_os("LATTICE_XDS_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(CASES)
        .expect("golden cases")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected the golden cases, found {cases:?}"
    );
    let mut mismatches = Vec::new();
    for case in &cases {
        for (name, actual) in outputs(case) {
            let path = case.join(name);
            if update {
                std::fs::write(&path, &actual).expect("write golden file");
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != actual {
                mismatches.push(format!(
                    "{}:\n--- expected\n{expected}\n+++ actual\n{actual}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "translation differs from the golden files (LATTICE_XDS_UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.join("\n")
    );
}

/// Every output file of one case, rendered as YAML.
fn outputs(case: &Path) -> Vec<(&'static str, String)> {
    let args = std::fs::read_to_string(case.join("args")).unwrap_or_default();
    let mut argv = vec!["lattice-xds".to_string(), "controller".to_string()];
    argv.extend(
        args.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from),
    );
    if !argv.iter().any(|arg| arg.starts_with("--manifests")) {
        argv.push(format!("--manifests={}", case.join("input").display()));
    }
    let Command::Controller(controller) = Cli::try_parse_from(&argv).expect("case args").command
    else {
        panic!("{}: args must be controller flags", case.display());
    };
    let config = controller.into_config().expect("case config");
    let Source::Manifests(dir) = &config.source else {
        panic!(
            "{}: a golden case reads a manifest directory",
            case.display()
        );
    };
    let observed = file::load(dir).expect("case manifests");
    let (mesh, skipped) = lattice::build(&observed.inputs, &[], &config.settings);
    let mut invalid = observed.invalid;
    invalid.extend(skipped);
    let warnings = observed.warnings;
    let resources = translate(&mesh);
    let mut outputs = vec![
        (
            "listeners.yaml",
            yaml(
                resources
                    .listeners
                    .iter()
                    .map(|m| message_to_json(m).expect("render")),
            ),
        ),
        (
            "routes.yaml",
            yaml(resources.routes.iter().map(|table| {
                let whole = table.configuration().expect("every host is made");
                message_to_json(&whole).expect("render")
            })),
        ),
        (
            "clusters.yaml",
            yaml(
                resources
                    .clusters
                    .iter()
                    .map(|m| message_to_json(m).expect("render")),
            ),
        ),
        (
            "secrets.yaml",
            yaml(
                resources
                    .secrets
                    .iter()
                    .map(|m| message_to_json(m).expect("render")),
            ),
        ),
        (
            "invalid.yaml",
            yaml(
                invalid
                    .iter()
                    .map(|i| serde_json::to_value(i).expect("render")),
            ),
        ),
    ];
    let warned = case.join("warnings.yaml").exists();
    if warned || !warnings.is_empty() {
        let rendered = warnings
            .iter()
            .map(|w| serde_json::to_value(w).expect("render"));
        outputs.push(("warnings.yaml", yaml(rendered)));
    }
    outputs
}

fn yaml(items: impl Iterator<Item = serde_json::Value>) -> String {
    let items: Vec<serde_json::Value> = items.collect();
    serde_yaml_ng::to_string(&items).expect("YAML")
}
