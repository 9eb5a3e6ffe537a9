#!/usr/bin/env bash
# Builds (from Go modules, never downloads prebuilt) the Kubernetes components, etcd, CoreDNS and helm
# into ${ZKOP_CACHE}/bin/<name>-<version>/<name>. Binaries already there are reused.
# Cold build times are appended to ${ZKOP_CACHE}/bin/build-times.txt.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mkdir -p "$BIN_CACHE"
# one build at a time (several scripts may ask for the binaries at once)
exec 9> "$BIN_CACHE/.build.lock"
flock 9 || die "could not lock $BIN_CACHE/.build.lock"
TIMES=$BIN_CACHE/build-times.txt
JOBS=${ZKOP_BUILD_JOBS:-2}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

have() { [[ -x $(bin "$1") ]]; }
record() { log "built $1 in ${2}s"; echo "$(date -u +%FT%TZ) $1 ${2}s" >> "$TIMES"; }

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for b in "${kube_bins[@]}"; do have "$b" || missing+=("$b"); done
if ((${#missing[@]})); then
  log "building Kubernetes $KUBE_VERSION: ${missing[*]} (one shared go build, -p $JOBS; takes tens of minutes on 2 cores)"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  ld=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X '$pkg.gitVersion=$KUBE_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
    ld+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  done
  stage=$BIN_CACHE/.stage-kube-$KUBE_VERSION
  rm -rf "$stage"; mkdir -p "$stage"
  pkgs=(); for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  start=$SECONDS
  (cd "$E2E_DIR/tools/kubernetes" && go build -p "$JOBS" -trimpath -tags selinux,notest -ldflags "-s -w $ld" -o "$stage/" "${pkgs[@]}") \
    || die "go build of Kubernetes failed; see the output above. Rerun: $0"
  for b in "${missing[@]}"; do mkdir -p "$(dirname "$(bin "$b")")"; mv "$stage/$b" "$(bin "$b")"; done
  rm -rf "$stage"
  record "kubernetes-$KUBE_VERSION(${missing[*]})" $((SECONDS - start))
fi
"$(bin kube-apiserver)" --version >&2

if ! have etcd; then
  log "building etcd $ETCD_VERSION"
  start=$SECONDS; d=$(dirname "$(bin etcd)"); mkdir -p "$d"
  (cd "$E2E_DIR/tools/etcd" && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$d/etcd" go.etcd.io/etcd/server/v3) \
    || die "go build of etcd failed; see above. Rerun: $0"
  record "etcd-$ETCD_VERSION" $((SECONDS - start))
fi
if ! have coredns; then
  log "building CoreDNS $COREDNS_VERSION"
  start=$SECONDS; d=$(dirname "$(bin coredns)"); mkdir -p "$d"
  GOBIN=$d go install -p "$JOBS" -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" \
    || die "go install of CoreDNS failed; see above. Rerun: $0"
  record "coredns-$COREDNS_VERSION" $((SECONDS - start))
fi
# Unstamped, helm assumes Kubernetes 1.20 for `helm template`/`lint` and refuses the chart's
# kubeVersion constraint; stamp the pinned minor (the chart tests build helm the same way).
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
HELM_K8S_STAMP="-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
if ! have helm; then
  log "building helm $HELM_VERSION"
  start=$SECONDS; d=$(dirname "$(bin helm)"); mkdir -p "$d"
  GOBIN=$d go install -p "$JOBS" -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $HELM_K8S_STAMP" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install of helm failed; see above. Rerun: $0"
  record "helm-$HELM_VERSION" $((SECONDS - start))
fi
for b in "${kube_bins[@]}" etcd coredns helm; do printf '  %-24s %s\n' "$b" "$(bin "$b")" >&2; done
log "binaries ready in $BIN_CACHE"
