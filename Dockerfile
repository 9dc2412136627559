# The operator's image: `featurerollout run` as a non-root user on python:3.11-slim.
#
#   docker build -t ghcr.io/featurerollout/featurerollout:0.1.0 .
#
# The Helm chart (charts/featurerollout) runs it with `args: [run, ...]`, replacing CMD and keeping
# ENTRYPOINT; tests/chart/test_dockerfile.py checks that the two agree. Images are not built in
# this repository's test environment (no container engine there).

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt README.md* ./
COPY operator ./operator
# Only what `featurerollout run` and the CLI need, at the versions CI tested (constraints.txt). The
# sandbox and the demo are their own distributions under tools/, never copied in: no local API
# server in the image.
RUN python -m venv /opt/featurerollout \
 && /opt/featurerollout/bin/pip install -c constraints.txt --upgrade pip \
 && /opt/featurerollout/bin/pip install -c constraints.txt --build-constraint constraints.txt .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="featurerollout" \
      org.opencontainers.image.description="Rolls a feature flag out in stages; rolls it back when Prometheus error budgets break" \
      org.opencontainers.image.source="https://github.com/featurerollout/featurerollout" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/featurerollout /opt/featurerollout
ENV PATH=/opt/featurerollout/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" uid/gid (distroless); the chart's securityContext uses the same.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
USER 65532:65532
# metrics (--metrics-port) and liveness (--liveness http://0.0.0.0:8081/healthz)
EXPOSE 8080 8081
ENTRYPOINT ["featurerollout"]
CMD ["run"]
