# shellcheck shell=bash
# Sourced by up.sh and down.sh: the processes of a test control plane as
# recorded under STATE_DIR/pids/<binary>.pid, one pid per file.

# The order to stop them in: clients of the API server first, etcd last.
cluster_procs_stop_order="kwok kube-scheduler kube-controller-manager kube-apiserver etcd"

# Marks a directory as a state directory these scripts made, so that down.sh
# never removes a directory it did not create (a mistyped STATE_DIR).
# shellcheck disable=SC2034 # used by up.sh and down.sh
cluster_marker=.kinformer-cluster

# Absolute form of a path given relative to the current directory.
cluster_abspath() {
  case $1 in
    /*) printf '%s\n' "${1%/}" ;;
    *) printf '%s\n' "$PWD/${1%/}" ;;
  esac
}

# True when PID is alive and runs the binary NAME. A reused pid, a zombie (no
# exe, empty cmdline) or a garbage pid file all count as not running.
cluster_pid_is() {
  local name=$1 pid=$2 exe arg0
  [[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
  if exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
    exe=${exe% (deleted)} # the binary was rebuilt under the running process
    # An explicit status: a bare return in an EXIT trap returns the exit status.
    [ "${exe##*/}" = "$name" ] && return 0 || return 1
  fi
  # exe is unreadable when /proc hides it from us; argv[0] then stands in.
  arg0=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | head -n 1) || return 1
  [ -n "$arg0" ] && [ "${arg0##*/}" = "$name" ]
}

# The recorded pid of NAME if it still runs NAME; fails otherwise.
cluster_running_pid() {
  local state=$1 name=$2 pid
  [ -f "$state/pids/$name.pid" ] || return 1
  pid=$(head -c 32 "$state/pids/$name.pid") || return 1
  cluster_pid_is "$name" "$pid" || return 1
  printf '%s\n' "$pid"
}

# Stops the recorded NAME: TERM, up to TIMEOUT seconds (default 10) for it to
# exit, then KILL. Removes the pid file either way.
cluster_stop() {
  local state=$1 name=$2 timeout=${3:-10} pid i
  if pid=$(cluster_running_pid "$state" "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      cluster_pid_is "$name" "$pid" || break
      sleep 0.1
    done
    if cluster_pid_is "$name" "$pid"; then
      echo "cluster: $name (pid $pid) ignored TERM for ${timeout}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        cluster_pid_is "$name" "$pid" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "$state/pids/$name.pid"
}

# Stops every recorded process, in cluster_procs_stop_order. Without etcd,
# kube-apiserver hangs on TERM: it then gets 2 seconds, not 10.
cluster_stop_all() {
  local state=$1 name timeout
  for name in $cluster_procs_stop_order; do
    timeout=10
    if [ "$name" = kube-apiserver ] && ! cluster_running_pid "$state" etcd >/dev/null; then
      timeout=2
    fi
    cluster_stop "$state" "$name" "$timeout"
  done
}
