#!/usr/bin/env bash
# Build the ses-proxy image with buildah, on the local stand-in base (no registry here).
#   deploy/container/build.sh [TAG]        default TAG: localhost/ses-proxy:test
# With a registry, build the same Dockerfile without --build-arg: its default base is
# python:3.11-slim-bookworm.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-localhost/ses-proxy:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/ses-proxy-base:bookworm}
deploy/container/make-local-base.sh "$BASE_IMAGE"
previous=$(buildah images --quiet --no-trunc "$TAG" 2>/dev/null | head -n 1 || true)
# --format docker keeps HEALTHCHECK (the OCI image format has no such field);
# --isolation chroot: RUN steps need no user namespaces or cgroups, and share the
# host's network, so pip reaches PyPI the way the host does.
buildah bud --isolation chroot --format docker --layers=false --pull=false \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$TAG" .
# The image this tag named before is now untagged: drop it (only it, nothing else).
current=$(buildah images --quiet --no-trunc "$TAG" | head -n 1)
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  buildah rmi "$previous" >/dev/null 2>&1 || true
fi
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$TAG"
