#!/usr/bin/env bash
# Builds (from Go modules, never downloads prebuilt) the Kubernetes components, etcd, CoreDNS and helm
# into ${ZKOP_CACHE}/bin/<name>-<version>/<name>, at the versions of e2e/versions.env. Binaries
# already there are reused. Cold build times are appended to ${ZKOP_CACHE}/bin/build-times.txt.
#
#   e2e/lib/build-binaries.sh                      everything (e2e/cluster up calls this)
#   e2e/lib/build-binaries.sh helm [etcd ...]      only these: kubernetes, etcd, coredns, helm
#                                                  (the chart tests build their helm this way)
#   e2e/lib/build-binaries.sh prometheus           Prometheus and promtool (not part of "everything":
#                                                  e2e/monitoring-test asks for them)
set -euo pipefail
source "$(dirname "$0")/common.sh"
mkdir -p "$BIN_CACHE"
TIMES=$BIN_CACHE/build-times.txt
JOBS=${ZKOP_BUILD_JOBS:-2}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

components=(kubernetes etcd coredns helm)
on_request=(prometheus)
if (($#)); then
  for c in "$@"; do
    [[ " ${components[*]} ${on_request[*]} " == *" $c "* ]] || die "unknown component $c; usage: $0 [${components[*]} ${on_request[*]}]"
  done
  components=("$@")
else
  # a whole run at a time (several scripts may ask for all the binaries at once)
  exec 9> "$BIN_CACHE/.build.lock"
  flock 9 || die "could not lock $BIN_CACHE/.build.lock"
fi
# one build of each component at a time
lock() { exec 8> "$BIN_CACHE/.build-$1.lock"; flock 8 || die "could not lock $BIN_CACHE/.build-$1.lock"; }
unlock() { exec 8>&-; }

have() { [[ -x $(bin "$1") ]]; }
record() { log "built $1 in ${2}s"; echo "$(date -u +%FT%TZ) $1 ${2}s" >> "$TIMES"; }
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
build_kubernetes() {
  local missing=() b ld="" pkg stage pkgs=() start
  for b in "${kube_bins[@]}"; do have "$b" || missing+=("$b"); done
  if ((${#missing[@]})); then
    log "building Kubernetes $KUBE_VERSION: ${missing[*]} (one shared go build, -p $JOBS; takes tens of minutes on 2 cores)"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ld+=" -X '$pkg.gitVersion=$KUBE_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
      ld+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
    done
    stage=$BIN_CACHE/.stage-kube-$KUBE_VERSION
    rm -rf "$stage"; mkdir -p "$stage"
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    start=$SECONDS
    (cd "$E2E_DIR/tools/kubernetes" && go build -p "$JOBS" -trimpath -tags selinux,notest -ldflags "-s -w $ld" -o "$stage/" "${pkgs[@]}") \
      || die "go build of Kubernetes failed; see the output above. Rerun: $0"
    for b in "${missing[@]}"; do mkdir -p "$(dirname "$(bin "$b")")"; mv "$stage/$b" "$(bin "$b")"; done
    rm -rf "$stage"
    record "kubernetes-$KUBE_VERSION(${missing[*]})" $((SECONDS - start))
  fi
  "$(bin kube-apiserver)" --version >&2
}

build_etcd() {
  have etcd && return
  log "building etcd $ETCD_VERSION"
  local start=$SECONDS d; d=$(dirname "$(bin etcd)"); mkdir -p "$d"
  (cd "$E2E_DIR/tools/etcd" && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$d/etcd" go.etcd.io/etcd/server/v3) \
    || die "go build of etcd failed; see above. Rerun: $0"
  record "etcd-$ETCD_VERSION" $((SECONDS - start))
}

build_coredns() {
  have coredns && return
  log "building CoreDNS $COREDNS_VERSION"
  local start=$SECONDS d; d=$(dirname "$(bin coredns)"); mkdir -p "$d"
  GOBIN=$d go install -p "$JOBS" -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" \
    || die "go install of CoreDNS failed; see above. Rerun: $0"
  record "coredns-$COREDNS_VERSION" $((SECONDS - start))
}

build_helm() {
  have helm && return
  log "building helm $HELM_VERSION"
  local start=$SECONDS d; d=$(dirname "$(bin helm)"); mkdir -p "$d"
  # Version stamps as in helm's release build. Unstamped, helm assumes Kubernetes 1.20 for
  # `helm template`/`lint` and refuses the chart's kubeVersion constraint: stamp the pinned minor.
  local stamp="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  stamp+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  stamp+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  GOBIN=$d go install -p "$JOBS" -trimpath -ldflags "-s -w $stamp" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install of helm failed; see above. Rerun: $0 helm"
  record "helm-$HELM_VERSION" $((SECONDS - start))
}

# Prometheus with only the Kubernetes service discovery (the one the scrape test uses): the cloud
# providers' SDKs would double the build time.
build_prometheus() {
  have prometheus && have promtool && return
  log "building Prometheus and promtool $PROMETHEUS_VERSION (-p $JOBS; several minutes on 2 cores)"
  local start=$SECONDS d stamp; d=$(dirname "$(bin prometheus)"); mkdir -p "$d"
  stamp="-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
  stamp+=" -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=module"
  (cd "$E2E_DIR/tools/prometheus" && go build -p "$JOBS" -trimpath -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w $stamp" -o "$d/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool) \
    || die "go build of Prometheus failed; see above. Rerun: $0 prometheus"
  record "prometheus-$PROMETHEUS_VERSION" $((SECONDS - start))
}

for c in "${components[@]}"; do
  lock "$c"
  "build_$c"
  unlock
  case $c in
    kubernetes) for b in "${kube_bins[@]}"; do printf '  %-24s %s\n' "$b" "$(bin "$b")" >&2; done ;;
    prometheus) for b in prometheus promtool; do printf '  %-24s %s\n' "$b" "$(bin "$b")" >&2; done ;;
    *) printf '  %-24s %s\n' "$c" "$(bin "$c")" >&2 ;;
  esac
done
log "binaries ready in $BIN_CACHE"
