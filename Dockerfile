# ML Event Bridge container image (docs/deploy.md).
#   build:  make image                     (= docker build -t ml-event-bridge:0.1.0 .)
#   run:    docker run --rm -p 8080:8080 --read-only --tmpfs /tmp \
#             -v "$PWD/my-config.yaml:/etc/bridge/config.yaml:ro" ml-event-bridge:0.1.0
#
# Reproducible: every third-party package comes from requirements.lock and the build tools (pip, setuptools,
# wheel) from requirements-build.lock, both pinned with hashes (`make lock` regenerates them from pyproject.toml).
# Stage 1 builds the project wheel with the pinned tools in /opt/build and installs the locked dependencies and
# the wheel into /opt/venv, which never holds pip, setuptools or wheel (created --without-pip, filled by the
# build venv's pip through --python). Stage 2 is a clean python:3.11-slim with only that venv: no compiler, no
# pip cache, no source tree. Both stages use the same base image so the venv's interpreter symlinks stay valid.

FROM python:3.11-slim AS builder

# lets a test machine prune builder-stage leftovers of earlier builds (testbed/docker.py) without touching others
LABEL org.opencontainers.image.title="ml-event-bridge-builder"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first (their layer is reused until a lock changes), binary wheels only, every file hash-checked.
COPY requirements-build.lock requirements.lock ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary :all: -r requirements-build.lock \
 && python -m venv --without-pip /opt/venv \
 && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes --only-binary :all: \
        -r requirements.lock

# Only what the wheel needs (see .dockerignore): metadata, then the package.
COPY pyproject.toml README.md ./
COPY bridge ./bridge

RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps /wheels/*.whl \
 && /opt/build/bin/pip --python /opt/venv/bin/python check \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/bridge --help > /dev/null


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="ml-event-bridge" \
      org.opencontainers.image.description="Bridge ML lifecycle events (Azure ML, SageMaker) into one CloudEvents stream on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Fixed numeric UID/GID so Kubernetes runAsNonRoot / runAsUser can verify it. /etc/bridge (the config) stays
# owned by root: the daemon can read its config but never rewrite it, even where the root filesystem is writable.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bridge \
 && install -d -o root -g root -m 0755 /etc/bridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

EXPOSE 8080

# GET /healthz on the port /etc/bridge/config.yaml serves (http.port; 8080 without a config), straight to
# loopback: http_proxy is never consulted. Set BRIDGE_HEALTH_URL when the daemon runs on another config path.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "bridge.healthcheck"]

# SIGTERM (docker stop / kubelet) makes the daemon drain within shutdown.grace_seconds, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge"]
CMD ["run", "--config", "/etc/bridge/config.yaml"]
