# Hand-written OCI image layout, packed with tar + sha256sum (no builder daemon needed).
# shellcheck shell=bash

# oci_pack ROOTFS_DIR OUT_TAR IMAGE_REF CONFIG_JSON
#   IMAGE_REF   full reference, e.g. docker.io/zookeeper-operator/zookeeper:3.9.5
#   CONFIG_JSON the image config's "config" object, e.g. {"Entrypoint":["/pause"],"User":"65535"}
# Writes a single-layer (uncompressed) OCI archive that `ctr images import` accepts.
oci_pack() {
  local rootfs=$1 out=$2 ref=$3 cfg=$4 work layer_sha layer_size cfg_sha cfg_size man_sha man_size tag
  work=$(mktemp -d "${TMPDIR:-/tmp}/oci.XXXXXX")
  mkdir -p "$work/blobs/sha256"
  tar --numeric-owner --sort=name --xattrs -C "$rootfs" -cf "$work/layer.tar" . \
    || { rm -rf "$work"; echo "oci_pack: tar of $rootfs failed" >&2; return 1; }
  layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/blobs/sha256/$layer_sha"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"zookeeper-operator e2e/images"}]}' \
    "$cfg" "$layer_sha" > "$work/config.json"
  cfg_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1); cfg_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$cfg_sha"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg_sha" "$cfg_size" "$layer_sha" "$layer_size" > "$work/manifest.json"
  man_sha=$(sha256sum "$work/manifest.json" | cut -d' ' -f1); man_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$man_sha"
  tag=${ref##*:}
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man_sha" "$man_size" "$ref" "$tag" > "$work/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
  tar -C "$work" -cf "$out.tmp" oci-layout index.json blobs && mv "$out.tmp" "$out"
  rm -rf "$work"
}
