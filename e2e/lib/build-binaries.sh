#!/usr/bin/env bash
# Builds (from Go modules, never downloads prebuilt) the Kubernetes components, etcd, CoreDNS and helm
# into ${ZKOP_CACHE}/bin/<name>-<version>/<name>, at the versions of e2e/versions.env. Binaries
# already there are reused. Cold build times are appended to ${ZKOP_CACHE}/bin/build-times.txt, and
# each build says beforehand roughly how long it takes from them. The go commands' output (one
# `go: downloading` line per module on a cold cache) goes to ${ZKOP_CACHE}/bin/logs/NAME.log and is
# summarised in one line; a failed build shows the end of that log.
#
#   e2e/lib/build-binaries.sh                      everything (e2e/cluster up calls this)
#   e2e/lib/build-binaries.sh helm [etcd ...]      only these: kubernetes, etcd, coredns, helm
#                                                  (the chart tests build their helm this way)
#   e2e/lib/build-binaries.sh prometheus           Prometheus and promtool (not part of "everything":
#                                                  e2e/monitoring-test asks for them)
#   e2e/lib/build-binaries.sh kube-router          kube-router (not part of "everything": e2e/cluster
#                                                  firewall on asks for it)
#   e2e/lib/build-binaries.sh cert-manager         cert-manager's controllers and CRDs (not part of
#                                                  "everything": e2e/cluster cert-manager on asks for them)
set -euo pipefail
source "$(dirname "$0")/common.sh"
mkdir -p "$BIN_CACHE"
TIMES=$BUILD_TIMES
GO_LOGS=$BIN_CACHE/logs
JOBS=${ZKOP_BUILD_JOBS:-2}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

components=(kubernetes etcd coredns helm)
on_request=(prometheus kube-router cert-manager)
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
built=()
record() { log "built $1 in ${2}s"; echo "$(date -u +%FT%TZ) $1 ${2}s" >> "$TIMES"; built+=("$1"); }
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
build_kubernetes() {
  local missing=() b ld="" pkg stage pkgs=() start
  for b in "${kube_bins[@]}"; do have "$b" || missing+=("$b"); done
  if ((${#missing[@]})); then
    log "building Kubernetes $KUBE_VERSION: ${missing[*]} (one shared go build, -p $JOBS): $(estimate "kubernetes-$KUBE_VERSION" "tens of minutes on 2 cores")"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ld+=" -X '$pkg.gitVersion=$KUBE_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
      ld+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
    done
    stage=$BIN_CACHE/.stage-kube-$KUBE_VERSION
    rm -rf "$stage"; mkdir -p "$stage"
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    start=$SECONDS
    (cd "$E2E_DIR/tools/kubernetes" && go_logged "Kubernetes $KUBE_VERSION" "$GO_LOGS/kubernetes-$KUBE_VERSION.log" \
      go build -p "$JOBS" -trimpath -tags selinux,notest -ldflags "-s -w $ld" -o "$stage/" "${pkgs[@]}") \
      || die "go build of Kubernetes failed; read $GO_LOGS/kubernetes-$KUBE_VERSION.log (its end is above), fix, then rerun: $0"
    for b in "${missing[@]}"; do mkdir -p "$(dirname "$(bin "$b")")"; mv "$stage/$b" "$(bin "$b")"; done
    rm -rf "$stage"
    record "kubernetes-$KUBE_VERSION(${missing[*]})" $((SECONDS - start))
  fi
}

build_etcd() {
  have etcd && return
  log "building etcd $ETCD_VERSION: $(estimate "etcd-$ETCD_VERSION" "a few minutes on 2 cores")"
  local start=$SECONDS d; d=$(dirname "$(bin etcd)"); mkdir -p "$d"
  (cd "$E2E_DIR/tools/etcd" && go_logged "etcd $ETCD_VERSION" "$GO_LOGS/etcd-$ETCD_VERSION.log" \
    go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$d/etcd" go.etcd.io/etcd/server/v3) \
    || die "go build of etcd failed; read $GO_LOGS/etcd-$ETCD_VERSION.log (its end is above), fix, then rerun: $0 etcd"
  record "etcd-$ETCD_VERSION" $((SECONDS - start))
}

build_coredns() {
  have coredns && return
  log "building CoreDNS $COREDNS_VERSION: $(estimate "coredns-$COREDNS_VERSION" "several minutes on 2 cores")"
  local start=$SECONDS d; d=$(dirname "$(bin coredns)"); mkdir -p "$d"
  GOBIN=$d go_logged "CoreDNS $COREDNS_VERSION" "$GO_LOGS/coredns-$COREDNS_VERSION.log" \
    go install -p "$JOBS" -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" \
    || die "go install of CoreDNS failed; read $GO_LOGS/coredns-$COREDNS_VERSION.log (its end is above), fix, then rerun: $0 coredns"
  record "coredns-$COREDNS_VERSION" $((SECONDS - start))
}

build_helm() {
  have helm && return
  log "building helm $HELM_VERSION: $(estimate "helm-$HELM_VERSION" "a few minutes on 2 cores")"
  local start=$SECONDS d; d=$(dirname "$(bin helm)"); mkdir -p "$d"
  # Version stamps as in helm's release build. Unstamped, helm assumes Kubernetes 1.20 for
  # `helm template`/`lint` and refuses the chart's kubeVersion constraint: stamp the pinned minor.
  local stamp="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  stamp+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  stamp+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  GOBIN=$d go_logged "helm $HELM_VERSION" "$GO_LOGS/helm-$HELM_VERSION.log" \
    go install -p "$JOBS" -trimpath -ldflags "-s -w $stamp" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install of helm failed; read $GO_LOGS/helm-$HELM_VERSION.log (its end is above), fix, then rerun: $0 helm"
  record "helm-$HELM_VERSION" $((SECONDS - start))
}

# Prometheus with only the Kubernetes service discovery (the one the scrape test uses): the cloud
# providers' SDKs would double the build time.
build_prometheus() {
  have prometheus && have promtool && return
  log "building Prometheus and promtool $PROMETHEUS_VERSION (-p $JOBS): $(estimate "prometheus-$PROMETHEUS_VERSION" "several minutes on 2 cores")"
  local start=$SECONDS d stamp; d=$(dirname "$(bin prometheus)"); mkdir -p "$d"
  stamp="-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
  stamp+=" -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=module"
  (cd "$E2E_DIR/tools/prometheus" && go_logged "Prometheus $PROMETHEUS_VERSION" "$GO_LOGS/prometheus-$PROMETHEUS_VERSION.log" \
    go build -p "$JOBS" -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w $stamp" -o "$d/" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool) \
    || die "go build of Prometheus failed; read $GO_LOGS/prometheus-$PROMETHEUS_VERSION.log (its end is above), fix, then rerun: $0 prometheus"
  record "prometheus-$PROMETHEUS_VERSION" $((SECONDS - start))
}

# kube-router for its NetworkPolicy firewall alone (e2e/cluster firewall on); the same binary has
# the router and service proxy, which are never started here.
build_kube-router() {
  have kube-router && return
  log "building kube-router $KUBE_ROUTER_VERSION (-p $JOBS): $(estimate "kube-router-$KUBE_ROUTER_VERSION" "a few minutes on 2 cores")"
  local start=$SECONDS d; d=$(dirname "$(bin kube-router)"); mkdir -p "$d"
  (cd "$E2E_DIR/tools/kube-router" && go_logged "kube-router $KUBE_ROUTER_VERSION" "$GO_LOGS/kube-router-$KUBE_ROUTER_VERSION.log" \
    go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$d/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) \
    || die "go build of kube-router failed; read $GO_LOGS/kube-router-$KUBE_ROUTER_VERSION.log (its end is above), fix, then rerun: $0 kube-router"
  record "kube-router-$KUBE_ROUTER_VERSION" $((SECONDS - start))
}

# cert-manager's controllers from e2e/tools/cert-manager (a main over the cert-manager module: the
# certificate controllers, the CA and self-signed issuers, the approver; no webhook, no ACME), and
# its CRDs from the same module, beside the binary.
build_cert-manager() {
  have cert-manager && return
  log "building cert-manager $CERT_MANAGER_VERSION (-p $JOBS): $(estimate "cert-manager-$CERT_MANAGER_VERSION" "about 6 minutes on 2 cores")"
  local start=$SECONDS d src; d=$(dirname "$(bin cert-manager)"); mkdir -p "$d/crds"
  (cd "$E2E_DIR/tools/cert-manager" && go_logged "cert-manager $CERT_MANAGER_VERSION" "$GO_LOGS/cert-manager-$CERT_MANAGER_VERSION.log" \
    go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$d/cert-manager-controller.tmp" .) \
    || die "go build of cert-manager failed; read $GO_LOGS/cert-manager-$CERT_MANAGER_VERSION.log (its end is above), fix, then rerun: $0 cert-manager"
  src=$(cd "$E2E_DIR/tools/cert-manager" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager) \
    || die "cannot find the cert-manager module's directory (go list -m); rerun: $0 cert-manager"
  cp "$src"/deploy/crds/cert-manager.io_*.yaml "$d/crds/" || die "the cert-manager module has no deploy/crds/cert-manager.io_*.yaml"
  chmod 644 "$d"/crds/*.yaml
  mv "$d/cert-manager-controller.tmp" "$d/cert-manager-controller"
  record "cert-manager-$CERT_MANAGER_VERSION" $((SECONDS - start))
}

# one line before a run that builds anything: which builds, roughly how long in all
todo=() total=0 unknown=false
for c in "${components[@]}"; do
  case $c in
    kubernetes) b=kube-apiserver key=kubernetes-$KUBE_VERSION; for x in "${kube_bins[@]}"; do have "$x" || b=$x; done ;;
    etcd) b=etcd key=etcd-$ETCD_VERSION ;;
    coredns) b=coredns key=coredns-$COREDNS_VERSION ;;
    helm) b=helm key=helm-$HELM_VERSION ;;
    prometheus) b=promtool key=prometheus-$PROMETHEUS_VERSION; have prometheus || b=prometheus ;;
    kube-router) b=kube-router key=kube-router-$KUBE_ROUTER_VERSION ;;
    cert-manager) b=cert-manager key=cert-manager-$CERT_MANAGER_VERSION ;;
  esac
  have "$b" && continue
  todo+=("$c")
  s=$(recorded_seconds "$key")
  if [[ -n $s ]]; then total=$((total + s)); else unknown=true; fi
done
if ((${#todo[@]} > 1)); then
  if $unknown; then
    log "building ${todo[*]} from Go modules (first run: tens of minutes on 2 cores; later runs reuse them)"
  else
    log "building ${todo[*]} from Go modules: $(roughly "$total") in all on this machine (recorded in $TIMES)"
  fi
fi
for c in "${components[@]}"; do
  lock "$c"
  "build_$c"
  unlock
done
if ((${#built[@]})); then
  log "binaries ready in $BIN_CACHE"
else
  log "binaries ready in $BIN_CACHE (reused: ${components[*]})"
fi
