#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's `prometheus` package) for tests/operator_kit.rs.
# Idempotent: does nothing when both are on PATH. Needs root (CI runs as root). The package's
# service is not used (the test starts its own prometheus on loopback); where an init system
# started it, it is stopped so that it does not hold port 9090 or scrape anything.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus-setup: $(prometheus --version 2>&1 | head -n1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Wait for another apt run (a parallel set-up step) rather than fail on its lock.
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
if command -v service >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
fi
echo "prometheus-setup: $(prometheus --version 2>&1 | head -n1)"
