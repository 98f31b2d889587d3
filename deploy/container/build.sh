#!/usr/bin/env bash
# Build the edge image with podman on a machine that reaches package indexes only (no
# container registry): the base is made from Debian's packages first if it is missing
# (build-base.sh), and pip inside the build uses this machine's package-index settings,
# handed over as build secrets (never a layer of the image).
#
#   deploy/container/build.sh                # -> localhost/edge:latest
#   EDGE_IMAGE=edge:dev deploy/container/build.sh
#   EDGE_BASE_IMAGE=docker.io/library/python:3.11-slim deploy/container/build.sh
#                                            # a registry's base instead (pulled, not made)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
base="${EDGE_BASE_IMAGE:-localhost/edge-base:bookworm}"
image="${EDGE_IMAGE:-localhost/edge:latest}"

if [[ "$base" == localhost/* ]]; then
  EDGE_BASE_IMAGE="$base" "$here/build-base.sh"
fi

secrets="$(mktemp -d)"
trap 'rm -rf "$secrets"' EXIT

# This machine's pip settings (config files and PIP_* variables alike), as `pip config
# list` shows them: the index URLs and hosts, without file:// indexes and local
# find-links, which the build can't see. The CA bundle pip trusts goes as a file.
python="${PYTHON:-python3}"
conf="$("$python" -m pip config list 2>/dev/null || true)"
ca=""
{
  echo "[global]"
  while IFS= read -r line; do
    key="${line%%=*}"; key="${key##*.}"
    value="${line#*=}"; value="${value#\'}"; value="${value%\'}"
    case "$key" in
      index-url|extra-index-url|trusted-host|timeout|default-timeout|retries)
        kept=()
        for v in $value; do [[ "$v" == file:* || "$v" == /* ]] || kept+=("$v"); done
        [[ ${#kept[@]} -gt 0 ]] && echo "$key = ${kept[*]}"
        ;;
      cert) ca="$value" ;;
    esac
  done <<<"$conf"
} | awk -F' = ' '!seen[$1]++' >"$secrets/pip.conf"   # the first of each (env wins)
ca="${ca:-${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}}"
if [[ -z "$ca" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  ca=/etc/ssl/certs/ca-certificates.crt   # the machine's trust store, local CAs included
fi
if [[ -n "$ca" && -f "$ca" ]]; then cp "$ca" "$secrets/pip-ca"; else : >"$secrets/pip-ca"; fi

old="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
start=$SECONDS
# --format docker: OCI images have no HEALTHCHECK. --network=host: the build reaches the
# index the way this machine does (proxies, DNS).
podman build --format docker --network=host \
  --build-arg BASE="$base" \
  --secret id=pip.conf,src="$secrets/pip.conf" \
  --secret id=pip-ca,src="$secrets/pip-ca" \
  --tag "$image" --file "$root/Dockerfile" "$root"
echo "image $image built in $((SECONDS - start))s"
# The image this tag named before (edge/ changed): gone, unless another tag or a container
# still uses it. Its ~100 MB would pile up on a machine that builds on every run (CI).
new="$(podman image inspect --format '{{.Id}}' "$image")"
if [[ -n "$old" && "$old" != "$new" ]]; then
  podman rmi "$old" >/dev/null 2>&1 || true
fi
