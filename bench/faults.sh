#!/usr/bin/env bash
# Measurements under faults, with the test utilities' UDP relay (no root needed):
#   - race-connect: time to a winner among 1 live peer and 0, 3, 10 black-holed ones;
#   - goodput of a 256 MiB transfer through the relay at 0 %, 1 % and 5 % loss.
# Runs the ignored `bench_*` tests of tests/suite/bench_faults.rs on the release build
# and prints their tables. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --release --test tests -- --ignored --nocapture --test-threads 1 bench_ 2>&1 |
    grep -v -E '^(running|test |$)|test result' || true
