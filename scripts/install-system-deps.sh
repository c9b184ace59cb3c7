#!/usr/bin/env bash
# Debian packages the test suite's real servers come from. Idempotent: installs only what is missing.
set -euo pipefail

# binary -> Debian package
declare -A NEEDED=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [wrk]=wrk
  [redis-server]=redis-server
  [pg_ctlcluster]=postgresql
)
missing=()
for binary in "${!NEEDED[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${NEEDED[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "Installing Debian packages: $packages"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null
