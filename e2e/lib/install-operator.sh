# Installs (or upgrades) the operator with its Helm chart into $OPERATOR_NAMESPACE and waits until
# it is Ready. Source it after common.sh; needs KUBECONFIG and the operator image in the cluster.
# shellcheck shell=bash
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-zookeeper-operator}
OPERATOR_RELEASE=${OPERATOR_RELEASE:-zookeeper-operator}

helm_() {
  local helm
  helm=$(bin helm)
  [[ -x $helm ]] || helm=$(command -v helm || true)
  [[ -n $helm ]] || die "helm is not built yet; run e2e/lib/build-binaries.sh (or install helm v3)"
  "$helm" "$@"
}

# install_operator [HELM ARGS...]
install_operator() {
  local kubectl
  kubectl=$(bin kubectl)
  [[ -x $kubectl ]] || kubectl=kubectl
  # Helm installs crds/ only on the first install and never upgrades them: apply the current CRD.
  log "applying the ZookeeperCluster CRD from crd/"
  "$kubectl" apply --server-side --force-conflicts -f "$REPO_DIR/crd/zookeeperclusters.yaml" > /dev/null \
    || die "could not apply crd/zookeeperclusters.yaml; check that KUBECONFIG points at a cluster you administer"
  log "installing the operator with Helm (release $OPERATOR_RELEASE in namespace $OPERATOR_NAMESPACE)"
  helm_ upgrade --install "$OPERATOR_RELEASE" "$REPO_DIR/deploy/helm/zookeeper-operator" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --wait --timeout 5m "$@" \
    || die "helm install failed; see: kubectl -n $OPERATOR_NAMESPACE describe pods; kubectl -n $OPERATOR_NAMESPACE logs deploy/$OPERATOR_RELEASE"
  log "the operator is Ready"
}
