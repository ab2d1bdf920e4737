#!/usr/bin/env bash
# Validates deploy/ and config-samples/ (see scripts/validate_manifests.py for the checks):
# Kubernetes objects against the OpenAPI schemas of one Kubernetes version (strict),
# NetworkAttachmentDefinitions and the device-plugin config against the project's contract.
#
#   scripts/validate-manifests.sh                # Kubernetes 1.33 schemas
#   K8S_VERSION=1.35.0 scripts/validate-manifests.sh
#
# Needs python3. kubernetes-validate (which ships the schemas: validating needs no network)
# and PyYAML are installed with pip into a private directory when Python cannot import them,
# so a distribution's externally-managed Python is left alone. Non-interactive; safe to run
# repeatedly. Exit status 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

KV_VERSION=1.37.0
K8S_VERSION=${K8S_VERSION:-1.33.0}
PYTHON=${PYTHON:-python3}
DEPS_DIR=${VALIDATE_PYDEPS:-${XDG_CACHE_HOME:-$HOME/.cache}/sriov-validate/kubernetes-validate-$KV_VERSION}

say() { echo "validate-manifests: $*" >&2; }
command -v "$PYTHON" >/dev/null || { say "$PYTHON not found"; exit 1; }

export PYTHONPATH="$DEPS_DIR${PYTHONPATH:+:$PYTHONPATH}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

if ! "$PYTHON" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing python3-pip"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
    else
      say "pip is not available for $PYTHON; install python3-pip"
      exit 1
    fi
  fi
  say "installing kubernetes-validate==$KV_VERSION into $DEPS_DIR"
  mkdir -p "$DEPS_DIR"
  "$PYTHON" -m pip install --quiet --upgrade --target "$DEPS_DIR" "kubernetes-validate==$KV_VERSION" ||
    { say "pip install kubernetes-validate failed"; exit 1; }
  "$PYTHON" -c 'import kubernetes_validate, yaml' || { say "kubernetes-validate still not importable"; exit 1; }
fi

exec "$PYTHON" scripts/validate_manifests.py --kubernetes-version "$K8S_VERSION" .
