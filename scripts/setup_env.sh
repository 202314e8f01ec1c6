#!/usr/bin/env bash
# Creates ./.venv with ROS 2 Kilted (PyPI wheels), PyTorch, FAISS, OpenCV and the build tooling,
# then builds this package (messages + node) with colcon into ./install.
# Idempotent: re-running skips what is already there. Usage: bash scripts/setup_env.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3.11}
# The venv lives outside the source tree: CMake refuses exported include paths inside it.
VENV="${VPR_VENV:-$HOME/.cache/vpr_node/venv}"

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

STAMP="$VENV/.vpr_deps_$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  python -m pip install -q --upgrade pip wheel "setuptools<80"  # colcon-core needs < 80
  python -m pip install -q -r "$ROOT/requirements.txt"
  python -m pip install -q --no-deps -r "$ROOT/requirements-nodeps.txt"
  touch "$STAMP"
fi

# The ROS wheels' exported CMake files carry the wheel builder's include paths; point them at this
# interpreter (../shared/ROS2_ON_PYPI.md, pitfall 3).
PYINC=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$(python -c 'import numpy; print(numpy.get_include())')
{ grep -rlE "/opt/python/cp311-cp311" "$VENV/share" --include="*.cmake" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g" "$f"
done

# ros2 launch / lifecycle / topic and launch_testing from ../shared/vendor/ros2 where ROS 2 is not installed.
command -v ros2 >/dev/null 2>&1 || bash "$ROOT/scripts/build_ros2_tools.sh"

# Build the ROS package (custom messages + Python node) exactly as on a drone: colcon build.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
if [ ! -f "$ROOT/install/vpr_node/share/vpr_node/package.xml" ] || [ "${VPR_REBUILD:-0}" = 1 ] \
   || [ -n "$(find "$ROOT/msg" "$ROOT/vpr_node" "$ROOT/CMakeLists.txt" "$ROOT/package.xml" -newer "$ROOT/install/vpr_node/share/vpr_node/package.xml" 2>/dev/null | head -1)" ]; then
  colcon --log-base "$ROOT/build/log" build --base-paths "$ROOT" --build-base "$ROOT/build" \
    --install-base "$ROOT/install" --symlink-install \
    --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF >/dev/null \
    || { echo "colcon build failed; see build/log" >&2; exit 1; }
fi
echo "environment ready (venv: $VENV)"
