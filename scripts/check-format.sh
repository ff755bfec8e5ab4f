#!/usr/bin/env bash
# The formatting gate of `make lint`: every Rust file of the workspace matches rustfmt. `cargo fmt`
# reaches only the files its module trees declare, and rustfmt leaves macro calls alone, so a
# module declared inside a macro would go unchecked; each file is therefore also checked on its
# own. Usage: scripts/check-format.sh [CRATE_DIR] (the project's own by default).
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
edition=$(sed -n 's/^edition *= *"\([0-9]*\)".*/\1/p' Cargo.toml | head -n 1)
cargo fmt --check
find src tests benches module/src build.rs -name '*.rs' -print0 | sort -z \
    | xargs -0 rustfmt --edition "${edition:-2024}" --check
