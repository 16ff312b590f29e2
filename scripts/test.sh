#!/usr/bin/env bash
# The whole test suite with its set-up, on a fresh machine or a developer's: the README's test
# command. Installs what the tests need when it is missing, then runs every test of the
# workspace with cargo-nextest (falling back to cargo test where nextest is not installed), then
# the soak scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."

# A Docker engine and the test image for tests/docker.rs (a note, not a failure, outside CI).
./scripts/docker-setup.sh
# Prometheus and promtool for tests/operator_kit.rs (installed as root; required under CI).
if ! ./scripts/prometheus-setup.sh; then
    if [ -n "${CI:-}" ]; then exit 1; fi
    echo "prometheus-setup failed; tests/operator_kit.rs will skip its Prometheus checks" >&2
fi

if command -v cargo-nextest >/dev/null 2>&1; then
    # nextest does not run doctests; run them first so nextest's summary closes the output.
    cargo test --workspace --doc
    cargo nextest run --workspace --profile ci "$@"
else
    echo "cargo-nextest not found; using cargo test" >&2
    cargo test --workspace "$@"
fi

# The soak scenarios (soak-tests/): a minute of load each while Loki fails and goes away, files
# rotate and the shipper is killed or stopped and started again; nothing may be lost or
# corrupted. Skipped when arguments pick tests (`./scripts/test.sh NAME`).
if [ $# -eq 0 ]; then
    cargo run --quiet -p log-capturer-harness -- soak --duration "${LC_SOAK_DURATION:-60s}"
fi
