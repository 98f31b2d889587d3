# The edge, as a non-root container that needs no writable root filesystem.
#
#   docker build -t edge .                                   (podman build --format docker …)
#   docker run --read-only --tmpfs /tmp -p 8080:8080 -e EDGE_JWT_SECRET=... \
#     -v "$PWD/config:/etc/edge:ro" edge
#
# BASE is any Debian-like image with Python 3.11+ and venv/ensurepip: python:3.11-slim from
# a registry, or one made from Debian's own packages (deploy/container/build-base.sh).
ARG BASE=python:3.11-slim

# ---------------------------------------------------------------------------- build
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1 \
    PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/edge
WORKDIR /src

# The package index this machine uses reaches pip as build secrets, which no layer keeps
# (deploy/container/build.sh passes them; a plain `docker build` goes to PyPI):
#   --secret id=pip.conf,src=FILE   a pip config file (index-url, extra-index-url, ...)
#   --secret id=pip-ca,src=FILE     the CA bundle pip should trust (an intercepting proxy)
# Dependencies first, in a layer of their own: edits to edge/ don't reinstall them.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    /opt/edge/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print(*p["project"]["dependencies"], *p["build-system"]["requires"], sep="\n")' \
      > /tmp/requirements.txt; \
    /opt/edge/bin/pip install --upgrade pip; \
    /opt/edge/bin/pip install -r /tmp/requirements.txt

COPY README.md ./
COPY images ./images
COPY edge ./edge
# No network here: the build backend is in the venv already. Then pip and the build
# backend go: the running edge needs neither.
RUN /opt/edge/bin/pip install --no-deps --no-build-isolation . \
    && /opt/edge/bin/edge --help >/dev/null \
    && /opt/edge/bin/pip uninstall --yes setuptools pip

# ---------------------------------------------------------------------------- run
FROM ${BASE}
RUN groupadd --gid 10001 edge \
    && useradd --uid 10001 --gid edge --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin --no-log-init edge
COPY --from=build /opt/edge /opt/edge
# The demo config, so the image starts as is; mount your own over it:
#   -v /path/to/config:/etc/edge:ro   (edge.yaml, routes/, api-keys.yaml)
COPY config /etc/edge

# Nothing is written at run time but temporary files (the image workers' forkserver
# socket) in TMPDIR: run with --read-only --tmpfs /tmp. Bytecode was compiled at install.
ENV PATH=/opt/edge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    EDGE_HEALTH_URL=http://127.0.0.1:8080/health
USER 10001:10001
WORKDIR /etc/edge
EXPOSE 8080
# SIGTERM drains: in-flight requests get up to drain_timeout (30s by default) to finish,
# so give `docker stop` more than that: docker stop -t 40.
STOPSIGNAL SIGTERM
# No curl in the image: Python's urllib. EDGE_HEALTH_URL follows a --port other than 8080.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(os.environ['EDGE_HEALTH_URL'], timeout=2).status != 200)"]
CMD ["edge", "serve", "--config", "/etc/edge", "--host", "0.0.0.0"]
