#!/usr/bin/env bash
# Private throwaway PostgreSQL cluster from the local binaries, for `make test`.
#   scripts/pg.sh start DIR   initdb (once) and start on a free loopback port; prints DATABASE_URL
#   scripts/pg.sh stop DIR    stop it
# Runs the server as the `postgres` user when invoked as root (initdb refuses root).
set -euo pipefail
cmd=${1:?usage: pg.sh start|stop DIR}
dir=${2:?usage: pg.sh start|stop DIR}

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)"); do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir=$d; break; fi
done
if [ -z "$bindir" ]; then
  cat >&2 <<'MSG'
pg.sh: no PostgreSQL server binaries (initdb, pg_ctl) found.
Install them, e.g. on Debian/Ubuntu:   sudo apt-get install -y postgresql
                 on Fedora/RHEL:       sudo dnf install -y postgresql-server
                 on macOS (Homebrew):  brew install postgresql@15
or point DATABASE_URL at an existing PostgreSQL (a role that may CREATE DATABASE).
MSG
  exit 1
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    # cd somewhere the postgres user may read, or pg_ctl complains about the cwd.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data
case $cmd in
start)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/false postgres
    chown postgres "$dir"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port=$(cat "$dir/port")
  else
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null \
      || shuf -i 20000-60000 -n 1)
    echo "$port" >"$dir/port"
    as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  fi
  echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  ;;
stop)
  [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
*) echo "usage: pg.sh start|stop DIR" >&2; exit 2 ;;
esac
