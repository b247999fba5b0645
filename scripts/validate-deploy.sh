#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine, no cluster, no
# network): every Dockerfile (parsed; paths, binary names, base images,
# non-root user, ENV/EXPOSE against what the binary reads and serves),
# docker-compose.yml against the Compose Specification schema and the
# topology amtprov needs, deploy/k8s against a strict Kubernetes schema and
# the same kind of topology checks, and deploy/k8s/nats/values.yaml.
# The schemas are vendored in deploy/schemas. `make test` runs the same checks
# as the deploy module's tests (with negative cases); this script prints a
# readable report. Exit status 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./deploy/cmd/validate-deploy -root . "$@"
