# Shared by the scripts in scripts/cluster/ (sourced, not run): messages, installing Debian packages
# when a command is missing, free ports, and waiting on PIDs.

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

note() {
  echo "$(basename "$0"): $*" >&2
}

# apt_install_for COMMAND PACKAGE...: installs the packages when COMMAND is not on PATH.
apt_install_for() {
  local command=$1
  shift
  command -v "$command" >/dev/null 2>&1 || apt_install "$@"
}

# apt_install PACKAGE...: Debian's packages, as root. `apt-get update` runs once per boot before the
# first install (the lists may be missing or old).
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "$* missing; install as root: apt-get update && apt-get install -y $*"
  fi
  command -v apt-get >/dev/null 2>&1 || die "$command is missing and this is not a Debian-like system (no apt-get); install: $*"
  local stamp=/run/marginlab-apt-updated
  if [ ! -e "$stamp" ]; then
    note "apt-get update (once)"
    apt-get update -q >&2 || die "apt-get update failed"
    touch "$stamp" 2>/dev/null || true
  fi
  note "installing $* with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

# free_port: a TCP port nothing listens on at 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() {
  python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# stop_pid PID NAME [SIGNAL]: sends SIGNAL (TERM) and waits up to 30 s, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 signal=${3:-TERM}
  alive "$pid" || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    alive "$pid" || return 0
    sleep 0.1
  done
  note "$name (pid $pid) did not stop within 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
