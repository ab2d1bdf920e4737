#!/usr/bin/env bash
# Validates deploy/ and config-samples/ (see scripts/validate_manifests.py for the checks):
# Kubernetes objects against the OpenAPI schemas of one Kubernetes version (strict),
# NetworkAttachmentDefinitions and the device-plugin config against the project's contract.
#
#   scripts/validate-manifests.sh                # Kubernetes 1.33 schemas
#   K8S_VERSION=1.35.0 scripts/validate-manifests.sh
#
# Installs kubernetes-validate (which ships the schemas; no network needed to validate) with
# pip when missing. Non-interactive; safe to run repeatedly. Exit status 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

KV_VERSION=1.37.0
K8S_VERSION=${K8S_VERSION:-1.33.0}
PYTHON=${PYTHON:-python3}

command -v "$PYTHON" >/dev/null || { echo "validate-manifests: $PYTHON not found" >&2; exit 1; }

if ! "$PYTHON" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  echo "validate-manifests: installing kubernetes-validate==$KV_VERSION" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
    "$PYTHON" -m pip install --quiet "kubernetes-validate==$KV_VERSION" ||
    { echo "validate-manifests: pip install kubernetes-validate failed" >&2; exit 1; }
fi

exec "$PYTHON" scripts/validate_manifests.py --kubernetes-version "$K8S_VERSION" .
