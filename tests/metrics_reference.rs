//! `docs/metrics.md` names every metric the controller and the signer register, as an operator
//! finds it on `/metrics` (with its prefix, and `_total` for a counter), and nothing else.

use std::collections::BTreeSet;

/// The metric names registered in `source`, with `prefix`: each `register(` call's first
/// argument, and whether it is a counter (from the field it registers).
fn registered(source: &str, prefix: &str, counters: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for call in source.split(".register(").skip(1) {
        let name = call
            .split('"')
            .nth(1)
            .expect("a register call names its metric first");
        let counter = counters.contains(&name);
        names.insert(format!(
            "{prefix}_{name}{}",
            if counter { "_total" } else { "" }
        ));
    }
    names
}

/// The field types of `struct Metrics` in `source`, by registered name: counters are the fields
/// typed `Counter` or `Family<…, Counter>`.
fn counters(source: &str) -> Vec<&str> {
    let body = source
        .split("pub struct Metrics {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("struct Metrics");
    let counter_fields: Vec<&str> = body
        .lines()
        .filter(|line| {
            let line = line.trim();
            !line.starts_with("//") && (line.ends_with("Counter,") || line.ends_with("Counter>,"))
        })
        .filter_map(|line| line.trim().trim_start_matches("pub ").split(':').next())
        .collect();
    // Each registration names the field it registers: `metrics.<field>.clone()`.
    let mut names = Vec::new();
    for call in source.split(".register(").skip(1) {
        let name = call.split('"').nth(1).unwrap();
        let field = call
            .split("metrics.")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .unwrap();
        if counter_fields.contains(&field) {
            names.push(name);
        }
    }
    names
}

#[test]
fn the_metrics_reference_names_every_metric() {
    let reference = std::fs::read_to_string("docs/metrics.md").unwrap();
    let documented: BTreeSet<String> = reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("lattice_xds_"))
        .map(str::to_string)
        .collect();

    let mut registered_names = BTreeSet::new();
    for (path, prefix) in [
        ("src/metrics.rs", "lattice_xds"),
        ("src/signer/metrics.rs", "lattice_xds_signer"),
    ] {
        let source = std::fs::read_to_string(path).unwrap();
        registered_names.extend(registered(&source, prefix, &counters(&source)));
    }
    assert!(registered_names.len() > 30, "{registered_names:?}");
    assert!(registered_names.contains("lattice_xds_pushes_total"));
    assert!(registered_names.contains("lattice_xds_push_latency_seconds"));

    let missing: Vec<_> = registered_names.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&registered_names).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/metrics.md lacks {missing:?} and names metrics no code registers: {unknown:?}"
    );
}
