#!/usr/bin/env bash
# Installs the PostgreSQL server binaries that tests/store start themselves (initdb + pg_ctl
# on a free loopback port; see tastemaker/testing/store.py). Idempotent and quiet: does
# nothing when a server is already installed. Needs root or sudo for apt-get.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

if have_postgres; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo ".ci/postgres.sh: no apt-get here; install the PostgreSQL server (initdb, pg_ctl) by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq postgresql >/dev/null
have_postgres || { echo ".ci/postgres.sh: postgresql installed but initdb not found" >&2; exit 1; }
echo ".ci/postgres.sh: installed $(ls -d /usr/lib/postgresql/*/ | tail -n 1)"
