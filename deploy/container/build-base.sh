#!/usr/bin/env bash
# Make the base image the edge's Dockerfile builds FROM when no registry is reachable:
# Debian bookworm (Python 3.11) from the distribution's own packages, imported into podman.
#
#   deploy/container/build-base.sh            # once; a no-op while the image exists
#   EDGE_BASE_REBUILD=1 deploy/container/build-base.sh   # make it again (security updates)
#
# Needs root, mmdebstrap and podman (apt-get install podman runc mmdebstrap). The image is
# named by EDGE_BASE_IMAGE (default localhost/edge-base:bookworm); build.sh passes it to
# the Dockerfile as --build-arg BASE=...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
image="${EDGE_BASE_IMAGE:-localhost/edge-base:bookworm}"
suite="${EDGE_BASE_SUITE:-bookworm}"

if [[ -z "${EDGE_BASE_REBUILD:-}" ]] && podman image exists "$image"; then
  echo "base image $image exists (EDGE_BASE_REBUILD=1 to make it again)"
  exit 0
fi

start=$SECONDS
# No docs, manuals or translations: nothing in the image reads them.
mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" - \
  | podman import --quiet \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/usr/bin/python3"]' \
      --message "mmdebstrap $suite: python3, python3-venv, ca-certificates" \
      - "$image" >/dev/null
echo "base image $image made in $((SECONDS - start))s"
