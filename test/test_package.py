"""The package as a whole: core never imports rclpy; the ground-station half installs with pip and works without ROS."""
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest


def test_core_imports_without_rclpy():
    code = ("import sys; import vpr_node.core.retrieval.strategy, vpr_node.core.retrieval.engine, "
            "vpr_node.core.index.folder, vpr_node.core.evaluation.recall, vpr_node.core.io.image_codec, "
            "vpr_node.core.mission.prepare, vpr_node.core.benchmarks.recall, vpr_node.ros.params; "
            "assert 'rclpy' not in sys.modules, 'core imported rclpy'")
    subprocess.run([sys.executable, "-c", code], check=True)


REPO = pathlib.Path(__file__).resolve().parents[1]


ROS_MODULES = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "rpyutils", "launch", "launch_ros", "ament_index_python",
               "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "lifecycle_msgs", "diagnostic_msgs",
               "builtin_interfaces", "rosbag2_py")


BLOCKER = f'''import sys
class _NoRos:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ROS_MODULES!r} or name == "vpr_node.msg":
            raise ImportError(f"{{name}}: ROS 2 is not installed on this ground station (test blocker)")
sys.meta_path.insert(0, _NoRos())
'''


@pytest.mark.slow
def test_pip_install_gives_a_vpr_cli_that_builds_an_index_without_ros(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    for rel in tracked:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    # a fresh venv whose third-party packages (torch, faiss, ...) come from this environment through a
    # .pth file, so the test needs no network; vpr_node itself only from the wheel built here
    env_dir = tmp_path / "ground_station"
    venv.create(env_dir, with_pip=False)
    # nothing of the source checkout or the colcon install on the path (env.sh puts both on PYTHONPATH)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "VIRTUAL_ENV") and not k.startswith("ROS")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})  # this venv's packages only
    pathlib.Path(site, "_vpr_test_deps.pth").write_text("\n".join(deps) + "\n")
    pathlib.Path(site, "sitecustomize.py").write_text(BLOCKER)
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheel_dir), str(src)], check=True, cwd=tmp_path)
    wheel = next(wheel_dir.glob("vpr_node-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True, cwd=tmp_path, env=env)


    def vpr(*args):
        out = subprocess.run([str(env_dir / "bin" / "vpr"), *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    no_ros = subprocess.run([str(py), "-c", "import rclpy"], capture_output=True, text=True, env=env)
    assert no_ros.returncode != 0 and "ROS 2 is not installed" in no_ros.stderr
    where = subprocess.run([str(py), "-c", "import vpr_node; print(vpr_node.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, check=True).stdout
    assert str(env_dir) in where  # the installed copy, not the source tree

    assert "prepare-mission" in vpr("--help")
    assert "efficientnet_lite0_netvlad" in vpr("backbones")  # model cards from share/vpr_node/models
    vpr("sample-map", "--out", "map", "--seed", "3")
    vpr("make-corpus", "--maps", "map/tiles.csv", "--out", "corpus", "--tile-m", "60", "--overlap", "0.5",
        "--tile-px", "96")
    vpr("build-index", "--backbone", "efficientnet_lite0_gem", "--backbone-options", '{"input_size": 96}',
        "--corpus", "corpus", "--out", "index", "--rotations", "1")
    assert (tmp_path / "index" / "manifest.json").is_file()
    assert (tmp_path / "index" / "index.faiss").is_file() or any((tmp_path / "index").glob("*.faiss"))


# The capability layers of vpr_node/core, bottom to top: a subpackage may import its own floor or lower ones,
# never a higher one (the README's architecture; docs/design-notes.md).
LAYERS = (("errors", "types", "options", "resources"), ("io", "maps"), ("views",), ("backbones",),
          ("index", "priors", "training", "autopilot"), ("retrieval",), ("verification",), ("indexing", "evaluation"),
          ("mission",), ("benchmarks",))


def test_core_imports_only_downwards():
    import ast

    floor = {name: i for i, names in enumerate(LAYERS) for name in names}
    core = REPO / "vpr_node" / "core"
    upward = []
    for path in core.rglob("*.py"):
        here = path.relative_to(core).parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vpr_node."):
                parts = node.module.split(".")
                assert parts[1] == "core", f"{path}: core imports {node.module} (the ROS layer or the CLI)"
                target = parts[2] if len(parts) > 2 else node.names[0].name
                assert here in floor and target in floor, f"{path}: {node.module} is in no layer of LAYERS"
                if floor[target] > floor[here]:
                    upward.append(f"{path.relative_to(REPO)} imports {node.module}")
    assert not upward, "\n".join(upward)


def test_the_nodes_start_without_pytorch():
    """PyTorch is 500 MiB of resident memory: the verifier runs no backbone, and vpr_node imports PyTorch only when
    its backbone runs on it (a model exported into the index runs on ONNX Runtime without it)."""
    import subprocess
    import sys
    code = ("import sys, vpr_node.ros.verifier_node, vpr_node.ros.node, vpr_node.ros.mavlink_node\n"
            "from vpr_node.ros.params import PARAMETERS, NodeConfig\n"
            "NodeConfig.from_params({**{n: d for n, (d, _) in PARAMETERS.items()}, 'index_dir': '/tmp/ix'})\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
