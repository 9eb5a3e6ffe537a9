#!/usr/bin/env bash
# Builds the operator image of the last release with static membership (every member's zoo.cfg
# lists server.1..N, reconfig off, no super user) and imports it into the e2e cluster's containerd,
# for the migration test (e2e/tests/migration.rs). Prints the image reference on stdout.
#
#   e2e/lib/previous-operator.sh          build (or reuse) and import; prints the reference
#                                         (exit 3: the previous release's commit is not in this clone,
#                                         even after `git fetch --unshallow`)
#
# The release is PREVIOUS_COMMIT, the parent of "Membership through dynamic reconfiguration, wired
# into the controller". Its source comes from this repository's history (`git archive`; a shallow
# clone needs `git fetch --unshallow` first). The OCI archive is cached in ${ZKOP_CACHE}/images by the
# commit and the compiler version, so a warm run only imports it. A cold run compiles the old tree's
# crate only: its dependencies are this tree's (same Cargo.lock and release profile at that commit),
# taken from a copy of target/release (the release build e2e/test makes first); without one,
# everything is compiled.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$E2E_DIR/lib/oci.sh"

PREVIOUS_COMMIT=b1148bf3c5b78d44914c4f0347e0b6533e1eaa23
IMAGE_DIR=$ZKOP_CACHE/images
CONTAINERD_SOCK=/run/zkop/containerd/containerd.sock
REF=docker.io/zookeeper-operator/operator:previous-${PREVIOUS_COMMIT:0:7}

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

[[ $(id -u) == 0 ]] || die "$0 must run as root (containerd)"
key=$(printf '%s\n' "$PREVIOUS_COMMIT" "$(rustc -V)" | sha256sum | cut -c1-16)
archive=$IMAGE_DIR/operator-previous-${PREVIOUS_COMMIT:0:7}-$key.oci.tar
t0=$SECONDS

if [[ ! -f $archive ]]; then
  if ! git -C "$REPO_DIR" cat-file -e "$PREVIOUS_COMMIT^{commit}" 2> /dev/null \
    && [[ $(git -C "$REPO_DIR" rev-parse --is-shallow-repository) == true ]]; then
    log "the previous release's commit is not in this shallow clone: git fetch --unshallow"
    git -C "$REPO_DIR" fetch --quiet --unshallow > /dev/null 2>&1 || log "git fetch --unshallow failed"
  fi
  if ! git -C "$REPO_DIR" cat-file -e "$PREVIOUS_COMMIT^{commit}" 2> /dev/null; then
    log "commit $PREVIOUS_COMMIT (the previous release) is not in this clone; run: git fetch --unshallow (exit 3)"
    exit 3
  fi
  mkdir -p "$IMAGE_DIR"
  work=$(mktemp -d "${TMPDIR:-/tmp}/zkop-previous.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/src" "$work/target/release"
  git -C "$REPO_DIR" archive "$PREVIOUS_COMMIT" | tar -x -C "$work/src"
  seeded=no
  if [[ -d $REPO_DIR/target/release/deps ]]; then
    # Dependencies at the same versions and profile are not compiled again (cargo rebuilds any
    # that differ). A copy, not links: nothing of the old tree is written into this tree's target.
    for d in deps build .fingerprint; do
      [[ -d $REPO_DIR/target/release/$d ]] || continue
      mkdir -p "$work/target/release/$d"
      find "$REPO_DIR/target/release/$d" -mindepth 1 -maxdepth 1 ! -name '*zookeeper_operator*' ! -name '*zookeeper-operator*' \
        -exec cp -a -t "$work/target/release/$d" {} +
    done
    seeded=yes
  fi
  # with this tree's release profile (CARGO_PROFILE_RELEASE_* override the old Cargo.toml's), so
  # that the copied dependencies match it instead of being compiled again with the old one
  profile=()
  while IFS='=' read -r pkey pvalue; do
    pkey=$(echo "$pkey" | tr -d ' ' | tr 'a-z-' 'A-Z_') pvalue=$(echo "$pvalue" | tr -d ' "')
    [[ -n $pkey ]] && profile+=("CARGO_PROFILE_RELEASE_$pkey=$pvalue")
  done < <(awk '/^\[profile\.release\]/ { p = 1; next } /^\[/ { p = 0 } p && /=/ && !/^#/' "$REPO_DIR/Cargo.toml")
  log "building the previous release's operator (${PREVIOUS_COMMIT:0:7}; dependencies from target/release: $seeded; profile: ${profile[*]:-its own})"
  (cd "$work/src" && env "${profile[@]}" CARGO_TARGET_DIR=$work/target cargo build --release --locked --quiet --bin zookeeper-operator) \
    || die "cargo build of the previous release (${PREVIOUS_COMMIT:0:7}) failed; see its output above"
  binary=$work/target/release/zookeeper-operator
  rootfs=$work/rootfs
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$binary" "$rootfs/usr/local/bin/zookeeper-operator"
  # the shared libraries the binary links (glibc, libgcc), at their own paths: as e2e/images does
  for lib in $(ldd "$binary" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  [[ -e /lib64 && ! -e $rootfs/lib64 && -d $rootfs/usr/lib64 ]] && ln -s usr/lib64 "$rootfs/lib64"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
  oci_pack "$rootfs" "$archive" "$REF" \
    '{"User":"65532:65532","Entrypoint":["/usr/local/bin/zookeeper-operator"],"Cmd":["run"],"Env":["PATH=/usr/local/bin:/usr/bin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"ExposedPorts":{"8080/tcp":{}}}' \
    || die "packing $REF failed"
  find "$IMAGE_DIR" -maxdepth 1 -name "operator-previous-*.oci.tar" ! -name "$(basename "$archive")" -delete
  log "built $archive in $((SECONDS - t0))s"
else
  log "reusing $archive"
fi

if [[ ! -S $CONTAINERD_SOCK ]] || ! ctr_ version > /dev/null 2>&1; then
  die "the cluster's containerd is not running; start it with e2e/cluster up"
fi
want=$(cat "$archive.digest" 2> /dev/null || true)
have=$(ctr_ images ls 2> /dev/null | awk -v r="$REF" '$1 == r {print $3}')
if [[ -z $want || $want != "$have" ]]; then
  log "importing $REF into containerd (namespace k8s.io)"
  ctr_ images import "$archive" > /dev/null || die "ctr images import $archive failed"
  ctr_ images ls | awk -v r="$REF" '$1 == r {print $3}' > "$archive.digest"
fi
log "previous release's operator image $REF ready in $((SECONDS - t0))s"
echo "$REF"
