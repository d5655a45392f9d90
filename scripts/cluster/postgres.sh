#!/usr/bin/env bash
# A project-local PostgreSQL cluster for the team's MLflow backend store: initdb in a folder, one
# port on 127.0.0.1, a role and a database, started and stopped by PID. No system-wide service.
#
#   scripts/cluster/postgres.sh start    initialise when needed, start, print the backend-store URI
#   scripts/cluster/postgres.sh stop     stop the server (by the PID in postmaster.pid)
#   scripts/cluster/postgres.sh status   "running PID PORT" or "stopped" (exit 0 / 3)
#   scripts/cluster/postgres.sh uri      print the backend-store URI (without the password)
#
# Environment: MARGINLAB_PG_DIR (default <project>/.marginlab/postgres), MARGINLAB_PG_PORT (default:
# the port it had before, else a free one). The password of the role `marginlab` is generated once
# and kept in $MARGINLAB_PG_DIR/pgpass (mode 600), the libpq password file: pass PGPASSFILE=<that
# file> to whatever connects (`marginlab ui --postgres` does), so it never appears in a command line.
# Debian's postgresql is installed with apt-get when initdb is missing. PostgreSQL refuses to run as
# root; run as root, the server runs as the `postgres` user, which must be able to enter the folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
root=${MARGINLAB_ROOT:-$(cd "$here/../.." && pwd)}
dir=${MARGINLAB_PG_DIR:-$root/.marginlab/postgres}
data=$dir/data
run_dir=$dir/run
role=marginlab
database=mlflow

pg_bin() {
  local found
  found=$(command -v initdb 2>/dev/null || true)
  if [ -n "$found" ]; then
    dirname "$(readlink -f "$found")"
    return
  fi
  # Debian keeps the server binaries out of PATH, one folder per major version.
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

ensure_postgres_installed() {
  if [ -z "$(pg_bin)" ]; then
    apt_install postgresql
  fi
  bin=$(pg_bin)
  [ -n "$bin" ] || die "no initdb found after installing postgresql"
}

# as_owner CMD...: runs as the server's owner (postgres when we are root, else ourselves).
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_pid() {
  [ -f "$data/postmaster.pid" ] || return 1
  local pid
  pid=$(head -1 "$data/postmaster.pid")
  alive "$pid" && echo "$pid"
}

port() {
  if [ -f "$dir/port" ]; then cat "$dir/port"; else echo ""; fi
}

uri() {
  echo "postgresql://$role@127.0.0.1:$(port)/$database"
}

init_cluster() {
  [ -f "$data/PG_VERSION" ] && return 0
  ensure_postgres_installed
  mkdir -p "$dir" "$run_dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (Debian's postgresql package creates it)"
    chown postgres: "$run_dir"
    mkdir -p "$data"
    chown postgres: "$data"
    runuser -u postgres -- test -w "$data" ||
      die "the postgres user cannot write $data (a parent folder is closed to it); set MARGINLAB_PG_DIR to a folder it can enter"
  fi
  # The role's password, generated once, kept only in the libpq password file (mode 600).
  (umask 077 && echo "*:*:$database:$role:$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" >"$dir/pgpass")
  # Superuser "postgres" with peer login over the private socket; TCP needs the password (SCRAM).
  as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
  touch "$dir/.needs-role"
}

start_server() {
  if pid=$(server_pid); then
    return 0
  fi
  ensure_postgres_installed
  local p
  p=${MARGINLAB_PG_PORT:-$(port)}
  if [ -z "$p" ] || ! port_free "$p"; then
    [ -n "${MARGINLAB_PG_PORT:-}" ] && die "port $p (MARGINLAB_PG_PORT) is in use"
    p=$(free_port)
  fi
  echo "$p" >"$dir/port"
  as_owner "$bin/pg_ctl" -D "$data" -l "$run_dir/postgres.log" -w -t 60 \
    -o "-p $p -k $run_dir -c listen_addresses=127.0.0.1 -c unix_socket_permissions=0700 -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start; see $run_dir/postgres.log"
  if [ -f "$dir/.needs-role" ]; then
    local password
    password=$(cut -d: -f5 "$dir/pgpass")
    # On standard input, so the password is in no command line.
    as_owner "$bin/psql" -h "$run_dir" -p "$p" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<SQL ||
CREATE ROLE $role LOGIN PASSWORD '$password';
CREATE DATABASE $database OWNER $role;
SQL
      die "creating role $role and database $database failed"
    rm -f "$dir/.needs-role"
  fi
}

case "${1:-}" in
start)
  init_cluster
  start_server
  uri
  ;;
stop)
  if pid=$(server_pid); then
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, close cleanly.
    stop_pid "$pid" PostgreSQL INT
    note "stopped PostgreSQL (pid $pid)"
  else
    note "PostgreSQL in $dir was not running"
  fi
  ;;
status)
  if pid=$(server_pid); then
    echo "running $pid $(port)"
  else
    echo stopped
    exit 3
  fi
  ;;
uri)
  [ -f "$dir/port" ] || die "no cluster in $dir yet; run: $0 start"
  uri
  ;;
*)
  echo "usage: $0 start|stop|status|uri   (folder: \$MARGINLAB_PG_DIR, default $dir)" >&2
  exit 2
  ;;
esac
