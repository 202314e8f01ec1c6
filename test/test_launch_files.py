"""The shipped launch files stay true to the package, checked statically (so also where the ROS 2 launch
tools are absent; test_launch_*.py run them for real where they are): every executable they start is
installed by CMakeLists.txt from scripts/, every node parameter they set is one the node declares, and
config/vpr.yaml sets every declared parameter and nothing else."""
import ast
import pathlib
import re

import pytest
import yaml

from vpr_node.ros import node_spec
from vpr_node.ros.mavlink_params import PARAMETERS as MAVLINK_PARAMETERS
from vpr_node.ros.params import PARAMETERS
from vpr_node.ros.verifier_params import PARAMETERS as VERIFIER_PARAMETERS

pytestmark = pytest.mark.ros_launch

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def _installed_programs() -> set[str]:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    progs = set()
    for m in re.finditer(r"install\(PROGRAMS([^)]*)DESTINATION", cmake):
        progs |= {pathlib.Path(p).name for p in m.group(1).split()}
    return progs


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_executables_are_installed_and_parameters_declared(path):
    tree = ast.parse(path.read_text())
    executables, param_keys = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "executable":
            if isinstance(node.value, ast.Constant):
                executables.add(node.value.value)
            elif isinstance(node.value, ast.Name) and node.value.id in ("EXECUTABLE", "VERIFIER_EXECUTABLE",
                                                                         "MAVLINK_EXECUTABLE"):
                executables.add(getattr(node_spec, node.value.id))  # node_spec's
            elif isinstance(node.value, ast.Name):  # a helper's parameter: the call sites pass node_spec names
                executables |= {node_spec.EXECUTABLE, node_spec.VERIFIER_EXECUTABLE, node_spec.MAVLINK_EXECUTABLE}
        if isinstance(node, ast.keyword) and node.arg == "parameters" and isinstance(node.value, ast.List):
            for elt in node.value.elts:
                if isinstance(elt, ast.Dict):
                    param_keys |= {k.value for k in elt.keys if isinstance(k, ast.Constant)}
    assert executables, "no executable in the launch file"
    installed = _installed_programs()
    for exe in executables:
        assert exe in installed, f"{exe} is started by {path.name} but not installed by CMakeLists.txt"
        assert (ROOT / "scripts" / exe).is_file()
    every = set(PARAMETERS) | set(VERIFIER_PARAMETERS) | set(MAVLINK_PARAMETERS)
    assert param_keys <= every | {"use_sim_time"}, param_keys - every


@pytest.mark.parametrize("node,declared", [(node_spec.NODE_NAME, PARAMETERS),
                                           (node_spec.VERIFIER_NAME, VERIFIER_PARAMETERS),
                                           (node_spec.MAVLINK_NAME, MAVLINK_PARAMETERS)])
def test_params_file_sets_only_declared_parameters(node, declared):
    node_params = yaml.safe_load((ROOT / "config" / "vpr.yaml").read_text())[node]["ros__parameters"]
    assert set(node_params) <= set(declared) | {"use_sim_time"}, set(node_params) - set(declared)
    assert set(declared) <= set(node_params), f"config/vpr.yaml lacks {set(declared) - set(node_params)}"
