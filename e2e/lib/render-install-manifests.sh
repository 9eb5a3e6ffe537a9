#!/usr/bin/env bash
# Regenerate the plain install manifests from the Helm chart:
#   1. copy crd/zookeeperclusters.yaml into the chart's crds/ (Helm installs CRDs from there),
#   2. render config/install/zookeeper-operator.yaml: a Namespace, the CRD and every object of
#      `helm template` with a fixed release name and namespace.
# Usage: e2e/lib/render-install-manifests.sh [--check]
#   --check  change nothing; exit 1 and say which file is stale when a regeneration would change it.
set -euo pipefail
# shellcheck source=e2e/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RELEASE=zookeeper-operator
NAMESPACE=zookeeper-operator
CHART=$REPO_DIR/deploy/helm/zookeeper-operator
CRD_SRC=$REPO_DIR/crd/zookeeperclusters.yaml
CRD_CHART=$CHART/crds/zookeeperclusters.yaml
OUT=$REPO_DIR/config/install/zookeeper-operator.yaml

check=false
case ${1:-} in
  --check) check=true ;;
  "") ;;
  *) die "unknown argument $1; usage: $0 [--check]" ;;
esac

HELM=${HELM:-$(bin helm)}
[ -x "$HELM" ] || die "helm $HELM_VERSION not found at $HELM; build it with: GOBIN=$(dirname "$HELM") go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (or run e2e/lib/build-binaries.sh)"
[ -f "$CRD_SRC" ] || die "$CRD_SRC is missing; generate it with: cargo run -- crd > crd/zookeeperclusters.yaml"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The chart is rendered from a copy whose crds/ holds the current CRD, so --check needs no writes.
cp -r "$CHART" "$tmp/chart"
mkdir -p "$tmp/chart/crds"
cp "$CRD_SRC" "$tmp/chart/crds/zookeeperclusters.yaml"

log "rendering $RELEASE into namespace $NAMESPACE with $HELM"
{
  echo "# Plain install manifests of the zookeeper-operator, for clusters without Helm."
  echo "# Generated from deploy/helm/zookeeper-operator by e2e/lib/render-install-manifests.sh; do not edit."
  echo "# Install:   kubectl apply --server-side -f config/install/zookeeper-operator.yaml"
  echo "# Uninstall: see README.md (deleting the CRD deletes every ZookeeperCluster)."
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: $NAMESPACE"
  echo "  labels:"
  echo "    app.kubernetes.io/name: zookeeper-operator"
  echo "    app.kubernetes.io/part-of: zookeeper-operator"
  # The CRD's own file may start with a document marker; --include-crds adds one before it.
  "$HELM" template "$RELEASE" "$tmp/chart" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" --include-crds
} > "$tmp/out.yaml"

stale=()
cmp -s "$CRD_SRC" "$CRD_CHART" 2>/dev/null || stale+=("deploy/helm/zookeeper-operator/crds/zookeeperclusters.yaml")
cmp -s "$tmp/out.yaml" "$OUT" 2>/dev/null || stale+=("config/install/zookeeper-operator.yaml")

if $check; then
  if [ ${#stale[@]} -gt 0 ]; then
    die "stale: ${stale[*]}; regenerate with e2e/lib/render-install-manifests.sh and commit the result"
  fi
  log "up to date: deploy/helm/zookeeper-operator/crds/zookeeperclusters.yaml, config/install/zookeeper-operator.yaml"
  exit 0
fi

mkdir -p "$(dirname "$OUT")" "$(dirname "$CRD_CHART")"
cp "$CRD_SRC" "$CRD_CHART"
cp "$tmp/out.yaml" "$OUT"
if [ ${#stale[@]} -gt 0 ]; then
  log "wrote ${stale[*]}"
else
  log "unchanged: both files were up to date"
fi
