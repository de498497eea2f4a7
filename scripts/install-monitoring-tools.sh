#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's `prometheus` package), which tests/monitoring/
# runs: promtool checks and unit-tests monitoring/alerts.yaml and the dashboard's queries,
# and a real Prometheus scrapes the functions while faults are induced.
# Idempotent and quick: does nothing when both are already on PATH.
# Needs root (or sudo) and apt; the package's service is not started (the tests start
# their own server on a free loopback port).
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  echo "ok: $(prometheus --version 2>&1 | head -n 1)"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
echo "installing: prometheus (Debian package, brings promtool)"
$sudo apt-get update -qq
# policy-rc.d 101: keep apt from starting the packaged service where an init system exists.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "installed: $(prometheus --version 2>&1 | head -n 1)"
