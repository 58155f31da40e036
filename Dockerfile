# ML Event Bridge container image (docs/deploy.md).
#   build:  docker build -t ml-event-bridge:0.1.0 .
#   run:    docker run --rm -p 8080:8080 --read-only --tmpfs /tmp \
#             -v "$PWD/my-config.yaml:/etc/bridge/config.yaml:ro" ml-event-bridge:0.1.0
#
# Stage 1 builds the project wheel and installs it (with its dependencies) into /opt/venv.
# Stage 2 is a clean python:3.11-slim with only that venv: no compiler, no pip cache, no source tree.
# Both stages use the same base image so the venv's interpreter symlinks stay valid.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip wheel

# Only what the wheel needs (see .dockerignore): metadata first, then the package.
COPY pyproject.toml README.md ./
COPY bridge ./bridge

RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl \
 && /opt/venv/bin/pip uninstall -y pip wheel \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/bridge --help > /dev/null


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="ml-event-bridge" \
      org.opencontainers.image.description="Bridge ML lifecycle events (Azure ML, SageMaker) into one CloudEvents stream on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_HEALTH_URL=http://127.0.0.1:8080/healthz

# Fixed numeric UID/GID so Kubernetes runAsNonRoot / runAsUser can verify it.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bridge \
 && mkdir -p /etc/bridge \
 && chown 10001:10001 /etc/bridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

EXPOSE 8080

# slim has no curl: probe /healthz with the interpreter we already ship (non-2xx raises, exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('BRIDGE_HEALTH_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]

# SIGTERM (docker stop / kubelet) makes the daemon drain within shutdown.grace_seconds, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge"]
CMD ["run", "--config", "/etc/bridge/config.yaml"]
