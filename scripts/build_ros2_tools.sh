#!/usr/bin/env bash
# Builds ROS 2's pure-Python command-line and launch tools (launch, launch_ros, launch_testing,
# launch_pytest, ros2cli + verbs) on top of the project's venv, from the upstream snapshots in
# ../shared/vendor/ros2 (see its README.md: verified steps and pitfalls). A machine with a real ROS 2
# installation already has them and skips this (ros2 on PATH before the venv is activated).
# Cached: rebuilt only when the tarballs change. Usage (from setup_env.sh): bash scripts/build_ros2_tools.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="${VPR_ROS2_VENDOR:-$ROOT/../shared/vendor/ros2}"
CACHE="${VPR_CACHE:-$HOME/.cache/vpr_node}"
SRC="$CACHE/ros2_tools_src"
INSTALL="$CACHE/ros2_tools_install"
if [ ! -d "$VENDOR" ]; then
  echo "ros2 tools: $VENDOR not found; launch/ros2cli not built (launch_testing tests will be skipped)"
  exit 0
fi
STAMP="$INSTALL/.built_$(cat "$VENDOR"/*.tar.gz | sha256sum | cut -c1-16)"
[ -f "$STAMP" ] && exit 0
python -m pip install -q osrf-pycommon argcomplete psutil
rm -rf "$SRC" "$INSTALL" "$CACHE/ros2_tools_build"
mkdir -p "$SRC"
for t in "$VENDOR"/*.tar.gz; do
  d="$SRC/$(basename "$t" .tar.gz)"
  mkdir -p "$d" && tar -xzf "$t" -C "$d"
done
# test-only and unneeded packages whose dependencies are not installable here (vendor README)
for p in launch_ros/launch_ros/test_launch_ros launch/launch/test_launch_testing ros2cli/ros2cli/ros2action \
         ros2cli/ros2cli/ros2component ros2cli/ros2cli/ros2doctor ros2cli/ros2cli/ros2multicast \
         ros2cli/ros2cli/ros2cli_test_interfaces ros2cli/ros2cli/ros2lifecycle_test_fixtures; do
  touch "$SRC/$p/COLCON_IGNORE"
done
export AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV"
colcon --log-base "$CACHE/ros2_tools_build/log" build --base-paths "$SRC" --build-base "$CACHE/ros2_tools_build" \
  --install-base "$INSTALL" --merge-install \
  --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF >/dev/null \
  || { echo "ros2 tools build failed; see $CACHE/ros2_tools_build/log" >&2; exit 1; }
touch "$STAMP"
echo "ros2 tools built into $INSTALL"
