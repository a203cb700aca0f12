#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# manifests/ against the code it deploys, without a cluster: every document
# parsed and checked as the API server would, RBAC against user/kube.c,
# capabilities against user/privs.c, flags and probes against the binaries'
# --help, the examples with `sluice-agent check`, the Containerfile against
# scripts/deps and the Makefile, the CA commands run with openssl
# (selftests/e2e/check_manifests.py says what each check holds). No root, no
# lab; a few seconds.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
	echo "[manifests] SKIP: needs python3-yaml (scripts/deps)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
exec /usr/bin/python3 "$repo/selftests/e2e/check_manifests.py" "$repo"
