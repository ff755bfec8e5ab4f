#!/usr/bin/env bash
# Runs the criterion signing benchmark (benches/signing.rs) and prints, for docs/benchmarks.md,
# signatures per second of the signer and of the aws-sigv4 crate, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --locked --bench signing -- --noplot >&2
python3 - <<'PY'
import json, os
def per_second(name):
    with open(os.path.join("target/criterion/sigv4", name, "new/estimates.json")) as f:
        estimates = json.load(f)
    return 1e9 / estimates["mean"]["point_estimate"]
ours, theirs = per_second("lattice-xds"), per_second("aws-sigv4")
cores = os.cpu_count()
print(f"| signer | signatures/s (1 core of {cores}) | × aws-sigv4 |")
print("|---|---:|---:|")
print(f"| lattice-xds `SigV4::sign` (cached key) | {ours:,.0f} | {ours / theirs:.2f} |")
print(f"| aws-sigv4 `http_request::sign` | {theirs:,.0f} | 1.00 |")
PY
