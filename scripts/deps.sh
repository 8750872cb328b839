#!/usr/bin/env bash
# Installs the Debian packages a target needs, only those missing.
# usage: scripts/deps.sh build|test|bench|run
# Uses sudo when not root. Runs apt-get update at most once per call.
set -euo pipefail

build_pkgs=(gcc make cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev
            libjansson-dev libsqlite3-dev libyaml-dev libcmocka-dev nettle-dev)
test_pkgs=(python3 python3-msgpack sqlite3 curl chromium)
bench_pkgs=(wrk nginx-light)

case "${1:-build}" in
  build|run) want=("${build_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench|run" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
