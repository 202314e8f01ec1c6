#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup_env.sh), builds the package with
# colcon, runs the lint gate (ruff, settings in ruff.toml), then pytest (core unit tests, process-level
# node tests, the developer-map tests when ../shared/data is present). Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
ruff check .
exec python -m pytest -p no:cacheprovider -ra "$@" test
