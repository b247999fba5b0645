#!/usr/bin/env bash
# Runs a command with DATABASE_URL set: the caller's, or a private throwaway
# PostgreSQL cluster started from the local binaries and removed afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/amtprov-pg.XXXXXX")
cleanup() { "$here/pg.sh" stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
DATABASE_URL=$("$here/pg.sh" start "$dir")
export DATABASE_URL
echo "with-postgres: private PostgreSQL at ${DATABASE_URL}" >&2
"$@"
