# Shared settings and helpers for the e2e scripts. Source it; do not run it.
# shellcheck shell=bash disable=SC2034 # the settings are used by the scripts that source this file
ZKOP_CACHE=${ZKOP_CACHE:-$HOME/.cache/zookeeper-operator}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)

# the pinned versions: KUBE_VERSION, ETCD_VERSION, COREDNS_VERSION, HELM_VERSION, PAUSE_VERSION,
# ZOOKEEPER_VERSION, OPERATOR_VERSION, PROMETHEUS_VERSION, KUBE_ROUTER_VERSION, CERT_MANAGER_VERSION
# shellcheck source=e2e/versions.env
source "$E2E_DIR/versions.env"

BIN_CACHE=$ZKOP_CACHE/bin
CLUSTER_DIR=$ZKOP_CACHE/cluster
LOG_DIR=$CLUSTER_DIR/logs
export KUBECONFIG_PATH=$CLUSTER_DIR/kubeconfig

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '%s ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

# bin NAME -> path of the cached binary for the pinned version
bin() {
  case $1 in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl) echo "$BIN_CACHE/$1-$KUBE_VERSION/$1" ;;
    etcd) echo "$BIN_CACHE/etcd-$ETCD_VERSION/etcd" ;;
    coredns) echo "$BIN_CACHE/coredns-$COREDNS_VERSION/coredns" ;;
    helm) echo "$BIN_CACHE/helm-$HELM_VERSION/helm" ;;
    prometheus|promtool) echo "$BIN_CACHE/prometheus-$PROMETHEUS_VERSION/$1" ;;
    kube-router) echo "$BIN_CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router" ;;
    cert-manager) echo "$BIN_CACHE/cert-manager-$CERT_MANAGER_VERSION/cert-manager-controller" ;;
    *) die "unknown binary $1" ;;
  esac
}

kubectl_() { "$(bin kubectl)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# ---------------------------------------------------------------- long steps: say what and how long
BUILD_TIMES=$BIN_CACHE/build-times.txt
# recorded_seconds KEY -> the last time recorded in build-times.txt for KEY (a line "DATE KEY Ns" or
# "DATE KEY(details) Ns"), in seconds; nothing when none is recorded
recorded_seconds() {
  awk -v k="$1" '$2 == k || index($2, k "(") == 1 {t = $NF} END {sub(/s$/, "", t); if (t != "") print t}' "$BUILD_TIMES" 2> /dev/null || true
}
# roughly SECONDS -> "40s" or "about 11 min"
roughly() { if (($1 < 90)); then echo "$1s"; else echo "about $((($1 + 30) / 60)) min"; fi; }
# estimate KEY FALLBACK -> how long KEY takes from the recorded time, else FALLBACK
estimate() {
  local s; s=$(recorded_seconds "$1")
  if [[ -n $s ]]; then echo "$(roughly "$s") on this machine (recorded in $BUILD_TIMES)"; else echo "$2"; fi
}

# go_logged WHAT LOGFILE COMMAND... : runs a go build or go install with its output in LOGFILE instead
# of the terminal (a cold build prints one `go: downloading` line per module, ~190 for Kubernetes)
# and summarises it as one line: "fetched N Go modules for WHAT (log: LOGFILE)". When COMMAND fails:
# the last lines of LOGFILE other than the downloads, and COMMAND's exit status (the caller says
# what to do next). Nothing reaches stdout.
go_logged() {
  local what=$1 logfile=$2 rc=0 n
  shift 2
  mkdir -p "$(dirname "$logfile")"
  "$@" > "$logfile" 2>&1 < /dev/null || rc=$?
  n=$(grep -c '^go: downloading ' "$logfile" || true)
  ((n == 0)) || log "fetched $n Go modules for $what (log: $logfile)"
  if ((rc != 0)); then
    log "$what failed (exit $rc); the last lines of $logfile:"
    grep -v '^go: downloading ' "$logfile" | tail -n 25 | sed 's/^/  /' >&2
  fi
  return "$rc"
}

# release_build [CARGO ARGS...] : cargo build --release, saying that it builds and roughly how long
# it takes. On a terminal cargo shows its own progress; elsewhere (CI, a log file) it runs with
# --quiet between a start line and an end line with the elapsed seconds. Builds of a minute or more
# are recorded in build-times.txt (key zookeeper-operator-release) for the next estimate.
release_build() {
  local t0=$SECONDS rc=0 binary=$REPO_DIR/target/release/zookeeper-operator quiet=(--quiet) took
  [[ -t 2 ]] && quiet=()
  if [[ -x $binary && -z $(find "$REPO_DIR/src" "$REPO_DIR/Cargo.toml" "$REPO_DIR/Cargo.lock" -newer "$binary" -print -quit 2> /dev/null) ]]; then
    log "checking the release binary is current (cargo build --release; seconds, the sources did not change)"
  else
    log "building the release binary (cargo build --release): $(estimate zookeeper-operator-release "about 4 min on 2 cores from scratch")"
  fi
  (cd "$REPO_DIR" && cargo build --release "${quiet[@]}" "$@") || rc=$?
  took=$((SECONDS - t0))
  if ((rc != 0)); then
    log "the release build failed after ${took}s (exit $rc); the compiler's messages are above: fix them, then rerun: cargo build --release"
    return "$rc"
  fi
  log "release binary ready in ${took}s: $binary"
  if ((took >= 60)); then
    mkdir -p "$BIN_CACHE"
    echo "$(date -u +%FT%TZ) zookeeper-operator-release ${took}s" >> "$BUILD_TIMES"
  fi
}
