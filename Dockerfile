# syntax=docker/dockerfile:1
#
# One image per service, all from this file:
#
#   docker build --target signaling -t echodesk/signaling:0.1.0 .
#   docker build --target media     -t echodesk/media:0.1.0 .
#   docker build --target recorder  -t echodesk/recorder:0.1.0 .
#   docker build --target api       -t echodesk/api:0.1.0 .
#
# One file rather than services/<name>/Dockerfile: the four images share the base, the non-root
# user, the health check and the project wheel (built once, in the `project` stage), and differ
# only in which locked requirements file their virtual environment installs. Each service's
# stages name that file explicitly, so `--target media` can never install the api's
# dependencies: the media image has no FastAPI, the api image no aiortc (tests/deploy checks it).
#
# Every locked requirement ships a manylinux wheel for CPython 3.11 (glibc <= 2.36), so no
# compiler is needed and the runtime stage is the slim base plus one copied virtualenv.

# The slim CPython 3.11 image on Debian 12; CI pins it by digest at release (docs/operations.md).
FROM python:3.11-slim-bookworm AS python-base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# --- build stages ------------------------------------------------------------------------------

FROM python-base AS builder
RUN python -m venv /opt/echodesk
WORKDIR /src

# The web UI's scripts (SIP.js bundled in by esbuild), built from the npm lock: the api serves them.
FROM node:20-bookworm-slim AS web
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY services/api/web/ services/api/web/
RUN npm run build:web

# The project itself, as a wheel, without dependencies: each service stage installs its own.
FROM builder AS project
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/ services/
COPY --from=web /src/services/api/web/dist/ services/api/web/dist/
RUN /opt/echodesk/bin/pip wheel --no-deps --wheel-dir /wheels .

FROM builder AS signaling-venv
COPY requirements/signaling.txt requirements.txt
RUN /opt/echodesk/bin/pip install --compile -r requirements.txt
COPY --from=project /wheels/ /wheels/
RUN /opt/echodesk/bin/pip install --compile --no-deps /wheels/*.whl

FROM builder AS media-venv
COPY requirements/media.txt requirements.txt
RUN /opt/echodesk/bin/pip install --compile -r requirements.txt
COPY --from=project /wheels/ /wheels/
RUN /opt/echodesk/bin/pip install --compile --no-deps /wheels/*.whl

FROM builder AS recorder-venv
COPY requirements/recorder.txt requirements.txt
RUN /opt/echodesk/bin/pip install --compile -r requirements.txt
COPY --from=project /wheels/ /wheels/
RUN /opt/echodesk/bin/pip install --compile --no-deps /wheels/*.whl

FROM builder AS api-venv
COPY requirements/api.txt requirements.txt
RUN /opt/echodesk/bin/pip install --compile -r requirements.txt
COPY --from=project /wheels/ /wheels/
RUN /opt/echodesk/bin/pip install --compile --no-deps /wheels/*.whl

# --- what every service image shares -----------------------------------------------------------

FROM python-base AS runtime
LABEL org.opencontainers.image.title="EchoDesk Voice" \
      org.opencontainers.image.description="Browser calling backend for the EchoDesk helpdesk" \
      org.opencontainers.image.licenses="Proprietary"
# A fixed, high UID/GID (not in the host's range), matching runAsUser in deploy/k8s.
RUN groupadd --system --gid 10001 echodesk \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin echodesk \
    && mkdir -p /var/lib/echodesk \
    && chown 10001:10001 /var/lib/echodesk
COPY deploy/docker/healthcheck.py /usr/local/lib/echodesk/healthcheck.py
# The root filesystem is read-only in Kubernetes: bytecode is compiled at build time, nothing is
# written at run time except under /var/lib/echodesk (ECHODESK_DATA_DIR) and /tmp.
ENV PATH=/opt/echodesk/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    ECHODESK_DATA_DIR=/var/lib/echodesk
WORKDIR /var/lib/echodesk
USER 10001:10001
# The service runtime drains on SIGTERM (stops taking work, finishes what it has within
# ECHODESK_DRAIN_TIMEOUT_S). The entrypoints below are exec form: `echodesk` is PID 1 and gets
# the signal itself, no shell in between.
STOPSIGNAL SIGTERM

# --- the four images ---------------------------------------------------------------------------

FROM runtime AS signaling
COPY --from=signaling-venv /opt/echodesk /opt/echodesk
# SIP UDP+TCP, SIP TLS, SIP WS, SIP WSS, health and metrics.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8088/tcp 8089/tcp 9101/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/echodesk/healthcheck.py", "signaling"]
ENTRYPOINT ["echodesk", "signaling"]

FROM runtime AS media
# The demo line speaks its words with espeak-ng (services/media/prompt.py); without it the line
# plays only its chime. Its voice data is all it adds (about 10 MB).
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
COPY --from=media-venv /opt/echodesk /opt/echodesk
# WebRTC (all calls of the worker), health and metrics. The RTP range towards carriers
# (ECHODESK_MEDIA_RTP_PORT_MIN..MAX, 10000-20000/udp) is not listed: `docker run -P` would
# publish ten thousand ports. Run media with the host's network (see docs/operations.md).
EXPOSE 7882/udp 9102/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/echodesk/healthcheck.py", "media"]
ENTRYPOINT ["echodesk", "media"]

FROM runtime AS recorder
COPY --from=recorder-venv /opt/echodesk /opt/echodesk
EXPOSE 9103/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/echodesk/healthcheck.py", "recorder"]
ENTRYPOINT ["echodesk", "recorder"]

FROM runtime AS api
COPY --from=api-venv /opt/echodesk /opt/echodesk
# REST, web UI, live events, health and metrics on one port.
EXPOSE 8000/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/usr/local/lib/echodesk/healthcheck.py", "api"]
ENTRYPOINT ["echodesk", "api"]
