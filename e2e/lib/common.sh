# Shared settings and helpers for the e2e scripts. Source it; do not run it.
# shellcheck shell=bash disable=SC2034 # the settings are used by the scripts that source this file
ZKOP_CACHE=${ZKOP_CACHE:-$HOME/.cache/zookeeper-operator}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)

# the pinned versions: KUBE_VERSION, ETCD_VERSION, COREDNS_VERSION, HELM_VERSION, PAUSE_VERSION,
# ZOOKEEPER_VERSION, OPERATOR_VERSION, PROMETHEUS_VERSION
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
    *) die "unknown binary $1" ;;
  esac
}

kubectl_() { "$(bin kubectl)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
