#!/usr/bin/env bash
# Build the local stand-in for python:3.11-slim-bookworm and tag it for buildah.
#
# Why: this workplace has no container registry, only Debian's and PyPI's package
# mirrors. The Dockerfile's default base (python:3.11-slim-bookworm) cannot be pulled,
# so we debootstrap a minimal Debian bookworm with python3 + python3-venv and hand it
# to buildah under the name that build-and-run.sh passes as BASE_IMAGE.
#
# Trust: outbound HTTPS here goes through an inspecting proxy whose CA the host trusts.
# pip inside `buildah bud` must trust it too, so the host's CA certificates are copied
# into the base (and pip pointed at the system bundle). That is a property of this
# machine, which is why it lives here and not in the Dockerfile.
#
# Cache: the debootstrapped rootfs (before the host CAs are added) is kept as a tarball
# under $SES_PROXY_BASE_CACHE (default /var/cache/ses-proxy-base), keyed by this
# script's hash, so a developer machine runs debootstrap once. The tagged image carries
# a label with the key (script + host CA bundle); when it matches, nothing is redone.
#
# Usage: deploy/container/make-local-base.sh [IMAGE_NAME]   (run as root)
set -euo pipefail

IMAGE=${1:-${BASE_IMAGE:-localhost/ses-proxy-base:bookworm}}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates
CACHE_DIR=${SES_PROXY_BASE_CACHE:-/var/cache/ses-proxy-base}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
HOST_CA_DIR=/usr/local/share/ca-certificates

script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
ca_hash=$( { cat "$HOST_CA_BUNDLE"; find "$HOST_CA_DIR" -type f -name '*.crt' -print0 2>/dev/null \
  | sort -z | xargs -0r cat; } | sha256sum | cut -c1-16)
image_key="${script_hash}-${ca_hash}"
tarball="$CACHE_DIR/rootfs-$SUITE-$script_hash.tar"

log() { printf '[make-local-base] %s\n' "$*" >&2; }

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool is missing: apt-get install -y buildah debootstrap"; exit 1; }
done

if [ "$(buildah inspect --type image --format '{{index .ImageAnnotations "org.ses-proxy.base-key"}}' "$IMAGE" 2>/dev/null || true)" = "$image_key" ]; then
  log "$IMAGE is up to date (key $image_key)"
  exit 0
fi

work=$(mktemp -d /var/tmp/ses-proxy-base.XXXXXX)
container=""
cleanup() {
  if [ -n "$container" ]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs" "$CACHE_DIR"

if [ -f "$tarball" ]; then
  log "using cached rootfs $tarball"
  tar -C "$rootfs" -xpf "$tarball"
else
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR"
  start=$(date +%s)
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # Slim it the way the official slim images are slimmed: no package lists, caches,
  # docs or man pages; the apt sources stay so that a derived image could apt-get.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
  find "$rootfs"/usr/lib/python3* -name '__pycache__' -prune -exec rm -rf {} + 2>/dev/null || true
  # Machine identity must not be baked in.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
  tar -C "$rootfs" --numeric-owner -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  # Old keys of this cache are useless now.
  find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
  log "debootstrap took $(( $(date +%s) - start ))s; cached as $tarball ($(du -h "$tarball" | cut -f1))"
fi

# The host's trust: its individual CA files, then the bundle itself (it may hold CAs
# that were added without a file in $HOST_CA_DIR).
mkdir -p "$rootfs/usr/local/share/ca-certificates"
if [ -d "$HOST_CA_DIR" ]; then
  find "$HOST_CA_DIR" -type f -name '*.crt' -exec cp {} "$rootfs/usr/local/share/ca-certificates/" \;
fi
cp "$HOST_CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
# update-ca-certificates only reads one certificate per file: split the bundle.
awk -v dir="$rootfs/usr/local/share/ca-certificates" '
  /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/host-%04d.crt", dir, n) }
  file { print > file }
  /-----END CERTIFICATE-----/ { close(file); file = "" }
' "$HOST_CA_BUNDLE"
rm -f "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
chroot "$rootfs" /usr/sbin/update-ca-certificates >/dev/null 2>&1 \
  || { log "update-ca-certificates failed in the rootfs"; exit 1; }
# Debian's pip already reads the system bundle; a pip upgraded from PyPI would not.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"

log "importing into buildah as $IMAGE"
previous=$(buildah images --quiet --no-trunc "$IMAGE" 2>/dev/null | head -n 1 || true)
container=$(buildah from scratch)
mnt=$(buildah mount "$container")
tar -C "$rootfs" -cpf - . | tar -C "$mnt" -xpf -
buildah umount "$container" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd /usr/bin/python3 \
  --annotation "org.ses-proxy.base-key=$image_key" \
  --label "org.opencontainers.image.description=local stand-in for python:3.11-slim-bookworm" \
  "$container"
buildah commit --quiet --rm "$container" "$IMAGE" >/dev/null
container=""
# The base this name held before is untagged now: drop it (only it; refused if in use).
if [ -n "$previous" ]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi
log "tagged $IMAGE (key $image_key)"
