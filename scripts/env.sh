# Source this file: activates the project's venv and the colcon install overlay.
# shellcheck disable=SC1091
_vpr_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# colcon's setup scripts and venv activation read unset variables: relax `set -u` while sourcing them
case $- in *u*) _vpr_nounset=1; set +u ;; *) _vpr_nounset=0 ;; esac
. "${VPR_VENV:-$HOME/.cache/vpr_node/venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# ros2 launch / lifecycle / topic and launch_testing, built from ../shared/vendor/ros2 (build_ros2_tools.sh)
_vpr_tools="${VPR_CACHE:-$HOME/.cache/vpr_node}/ros2_tools_install/local_setup.bash"
[ -f "$_vpr_tools" ] && ! command -v ros2 >/dev/null 2>&1 && . "$_vpr_tools"
unset _vpr_tools
. "$_vpr_root/install/setup.bash"
[ "$_vpr_nounset" = 1 ] && set -u
unset _vpr_nounset
export PYTHONPATH="$_vpr_root${PYTHONPATH:+:$PYTHONPATH}"
unset _vpr_root
# Full-resolution frames between local processes need the shared-memory profile (see the XML).
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/config/fastdds_large_frames.xml}"
