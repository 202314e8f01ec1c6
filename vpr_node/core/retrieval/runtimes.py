"""Inference runtimes behind one interface: PyTorch (FP32/FP16, CPU or CUDA), ONNX Runtime, TensorRT.

The installed runtime set plays the role of the C2 spec's build flags: BUILD_<X>_RUNTIME=ON iff the
runtime's library imports here. A backbone that needs a runtime that is absent fails at configure.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from vpr_node.core.errors import ConfigurationError, VprBackboneError

if TYPE_CHECKING:  # PyTorch is imported by the runtimes that use it: ONNX Runtime runs without it
    import torch

RUNTIME_NAMES = ("pytorch", "onnxruntime", "tensorrt")
PARITY_TOLERANCE = 1e-4  # largest |ONNX - PyTorch| descriptor component an export accepts (unit descriptors)
_MODULES = {"pytorch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def installed_runtimes() -> frozenset[str]:
    """Runtimes whose library is importable. VPR_DISABLE_RUNTIMES=a,b removes some (to emulate a
    binary built without them, e.g. on a target image that ships ONNX Runtime only)."""
    disabled = {s.strip() for s in os.environ.get("VPR_DISABLE_RUNTIMES", "").split(",") if s.strip()}
    return frozenset(
        n for n, mod in _MODULES.items() if n not in disabled and importlib.util.find_spec(mod) is not None
    )


def build_flag(runtime: str, installed: frozenset[str]) -> str:
    name = runtime.upper() if runtime != "onnxruntime" else "ONNX"
    return f"BUILD_{name}_RUNTIME={'ON' if runtime in installed else 'OFF'}"


class Runtime:
    name = "base"
    precision = "fp32"

    def forward(self, batch) -> np.ndarray:
        """(N, 3, H, W) float32 array (or tensor) -> (N, D) descriptors."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class TorchRuntime(Runtime):
    """Eager PyTorch. FP16 casts model and inputs to half (on CPU and CUDA)."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", device: str = "cpu"):
        import torch
        if precision not in ("fp32", "fp16"):
            raise ConfigurationError(f"pytorch runtime precision must be fp32 or fp16, got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigurationError(f"device {device!r} requested but CUDA is not available; use device 'cpu'")
        self.precision, self.device = precision, torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()

    def forward(self, batch) -> np.ndarray:
        import torch
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        with torch.inference_mode():
            out = self.model(batch.to(self.device, self.dtype))
        return out.detach().to("cpu").numpy()


def export_onnx(model: torch.nn.Module, input_size: tuple[int, int], path, opset: int = 17) -> pathlib.Path:
    """Export a backbone to ONNX with a dynamic batch axis."""
    import torch
    path = pathlib.Path(path)
    model = model.to("cpu", torch.float32).eval()
    if hasattr(model, "export_module"):
        model = model.export_module().eval()
    dummy = torch.zeros(1, 3, *input_size)
    torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["descriptor"],
                      dynamic_axes={"image": {0: "batch"}, "descriptor": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    return path


class OnnxRuntime(Runtime):
    """ONNX Runtime (CPU provider here; CUDA/TensorRT providers where installed)."""

    name = "onnxruntime"

    def __init__(self, model: torch.nn.Module | None = None, input_size: tuple[int, int] | None = None,
                 onnx_path: str | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigurationError("runtime 'onnxruntime' requested but onnxruntime is not installed "
                                     "(pip install onnxruntime)") from exc
        self.parity_max_abs_diff: float | None = None
        if onnx_path is None:
            if model is None or input_size is None:
                raise ConfigurationError("onnxruntime needs an exported .onnx file or a model to export")
            self._tmp = tempfile.TemporaryDirectory(prefix="vpr_onnx_")
            onnx_path = str(export_onnx(model, input_size, pathlib.Path(self._tmp.name) / "model.onnx"))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_path, opts, providers=ort.get_available_providers())
        self.input_name = self.session.get_inputs()[0].name
        if model is not None:
            self.parity_max_abs_diff = check_parity(model, self)

    def forward(self, batch) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            batch = batch.float().numpy()  # a torch tensor
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def check_parity(model, exported: Runtime, n_frames: int = 4, seed: int = 0) -> float:
    """Largest |exported - PyTorch| descriptor component on `n_frames` random frames through the backbone's own
    preprocessing; a ConfigurationError above PARITY_TOLERANCE (the model does not export faithfully)."""
    rng = np.random.default_rng(seed)
    batch = model.preprocessor.batch([rng.integers(0, 256, (270, 480, 3), dtype=np.uint8) for _ in range(n_frames)])
    reference = TorchRuntime(model).forward(batch)
    diff = float(np.max(np.abs(exported.forward(batch) - reference)))
    if not diff <= PARITY_TOLERANCE:
        raise ConfigurationError(f"{model.label}: ONNX Runtime's descriptors differ from PyTorch's by {diff:.2e} "
                                 f"(> {PARITY_TOLERANCE:g}); the model does not export faithfully, run it on pytorch")
    return diff


def create_runtime(name: str, model, precision: str = "fp32", device: str = "cpu",
                   installed: frozenset[str] | None = None) -> Runtime:
    """Pick and build a runtime for a backbone (the runtimes its spec requires are checked: create_backbone
    copies them onto the model); every unavailable choice is a ConfigurationError that names it."""
    installed = installed_runtimes() if installed is None else installed
    if name not in RUNTIME_NAMES:
        raise ConfigurationError(
            f"unknown runtime {name!r}; choose one of {', '.join(RUNTIME_NAMES)}", parameter="runtime"
        )
    required, pretty = tuple(model.required_runtimes), model.display_name or model.label
    for need in required:
        if need not in installed:
            raise ConfigurationError(f"{pretty} requires {build_flag(need, frozenset({need}))}; this binary has "
                                     f"{build_flag(need, installed)}", runtime=need)
    if required and name not in required:
        raise ConfigurationError(f"backbone {model.label} runs only on runtime(s) {', '.join(required)}, not {name!r}",
                                 parameter="runtime")
    if name not in installed:
        raise ConfigurationError(f"runtime {name!r} is not available here ({build_flag(name, installed)}); "
                                 f"installed runtimes: {', '.join(sorted(installed)) or 'none'}", runtime=name)
    if name == "pytorch":
        return TorchRuntime(model, precision, device)
    if name == "onnxruntime":
        if precision != "fp32":
            raise ConfigurationError("the onnxruntime runtime runs fp32 here; set precision to fp32")
        return OnnxRuntime(model, model.preprocessor.input_shape())
    raise ConfigurationError("runtime 'tensorrt': engine building is not implemented in this release; "
                             "use pytorch or onnxruntime", runtime=name)


def check_descriptor(out: np.ndarray, dim: int, label: str) -> np.ndarray:
    """Validate a runtime's output: shape (N, dim), finite. Otherwise VprBackboneError."""
    if out.ndim != 2 or out.shape[1] != dim:
        raise VprBackboneError(f"{label}: output shape {tuple(out.shape)} does not match descriptor_dim {dim}")
    if not np.all(np.isfinite(out)):
        raise VprBackboneError(f"{label}: descriptor contains NaN or inf", backbone=label)
    return out
