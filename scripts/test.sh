#!/usr/bin/env bash
# Runs every test: unit, property and integration tests, on SQLite and on PostgreSQL.
#
# PostgreSQL: uses SIGIL_TEST_POSTGRES_URL if set (each test creates and drops its own database
# next to the one named there); otherwise creates a fresh database on 127.0.0.1:5432 if a server
# answers there. Without PostgreSQL the PostgreSQL variants are skipped locally and fail in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SIGIL_TEST_POSTGRES_URL:-}" ]; then
  if command -v psql >/dev/null 2>&1 && psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    db="sigil_test_$(date +%s)_$$"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
    trap 'psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
    export SIGIL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/$db"
  else
    echo "note: no PostgreSQL on 127.0.0.1:5432 and SIGIL_TEST_POSTGRES_URL unset: PostgreSQL variants will be skipped" >&2
  fi
fi

export PATH="$PATH:/usr/sbin"   # Debian installs the mosquitto broker there
for tool in openssl curl tar mosquitto mosquitto_pub; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: the interop tests need '$tool' on PATH" >&2; exit 1; }
done

python3 -c 'import paho.mqtt' 2>/dev/null || { echo "error: the Mosquitto deployment test needs paho-mqtt (python3 -m pip install paho-mqtt==2.1.0)" >&2; exit 1; }

command -v st >/dev/null 2>&1 || { echo "error: the API conformance test needs Schemathesis (python3 -m pip install schemathesis==4.32.5)" >&2; exit 1; }

for tool in "cyclonedx-py cyclonedx-bom==7.2.1" "sbom4python sbom4python==0.12.6" "pyspdxtools spdx-tools==0.8.3"; do
  set -- $tool
  command -v "$1" >/dev/null 2>&1 || { echo "error: the SBOM tests need $1 (python3 -m pip install $2)" >&2; exit 1; }
done

python3 -c 'import spdx_python_model' 2>/dev/null || { echo "error: the SPDX 3 test needs spdx-python-model (python3 -m pip install spdx-python-model==0.0.6)" >&2; exit 1; }

python3 -c 'import sectxt' 2>/dev/null || { echo "error: the disclosure test needs sectxt (python3 -m pip install sectxt==0.9.8)" >&2; exit 1; }

[ -d tools/csaf/node_modules/@secvisogram/csaf-validator-lib ] || { echo "error: the CSAF test needs BSI's validator (npm ci --prefix tools/csaf)" >&2; exit 1; }

for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: the console's browser tests need '$tool' (Debian packages chromium and chromium-driver)" >&2; exit 1; }
done
[ -f tools/console/node_modules/axe-core/axe.min.js ] || { echo "error: the console's accessibility tests need axe-core (npm ci --prefix tools/console)" >&2; exit 1; }

# The dependency-direction check (.ci/run) on workspaces made wrong on purpose.
bash scripts/test-check-deps.sh
# The code-shape check (.ci/run), likewise.
bash scripts/test-check-sizes.sh

cargo test --workspace --locked
