# syntax=docker/dockerfile:1.7
# movierec deadletter: the dead-letter sink of the KafkaSource, the Broker and the Trigger;
# keeps every event Knative could not deliver in the store. Core dependencies only, no torch.
# Build from the repository root (the ignore file beside this one keeps the context
# to what the image needs):
#   docker build -f docker/deadletter.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     --build-arg MODEL_VERSION=<model version> -t movierec-deadletter .
# Expected size: about 450 MB unpacked, as recommend's and ingest's.
# The build stage is the run stage's image (nothing is compiled), so the venv's python links stay valid.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
COPY pipelines/ pipelines/
# The project itself, not a registry package: its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[ingest]"

# The run stage by digest (the tag's, as pinned by many public projects; the build stage's
# tag had no digest that could be confirmed from here, so it stays a tag: same Python 3.11.13).
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
ARG GIT_COMMIT=unknown
ARG MODEL_VERSION=unknown
LABEL org.opencontainers.image.title="movierec-deadletter" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      io.movierec.model-version="${MODEL_VERSION}"
# functions-framework reads PORT (Knative sets it; 8080 otherwise).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    HOME=/tmp \
    MOVIEREC_GIT_COMMIT=${GIT_COMMIT}
RUN groupadd --system --gid 10001 movierec \
    && useradd --system --uid 10001 --gid movierec --no-create-home --home-dir /tmp movierec
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY functions/deadletter/ functions/deadletter/
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
CMD ["functions-framework", "--source", "functions/deadletter/main.py", "--target", "deadletter"]
