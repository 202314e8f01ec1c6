#!/usr/bin/env bash
# The main job on the embedded default: installs what it needs, builds the sample map, tile corpus
# and FAISS index, starts the vpr_node process, streams a synthesised sample flight into it over ROS
# topics and prints each frame's top-K and a recall/latency summary. Extra arguments go to `vpr demo`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
exec "$ROOT/scripts/vpr" demo "$@"
