"""VprStrategy: embed a frame (or a stream of tiles and views) with a backbone on a runtime, retrieve the top-K
tiles from the index; `load_strategy` is everything configure loads and checks. PyTorch is imported only by
the backbones and runtimes that use it: a model exported into the index folder runs on ONNX Runtime without it
(retrieval/exported.py)."""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from vpr_node.core.errors import ConfigurationError, VprBackboneError, VprError
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.retrieval.exported import (
    exported_backbone,
    exported_model_path,
    has_exported_model,
    verify_exported_files,
)
from vpr_node.core.retrieval.runtimes import OnnxRuntime, Runtime, check_descriptor, create_runtime, installed_runtimes
from vpr_node.core.types import Candidate

if TYPE_CHECKING:
    from vpr_node.core.backbones.base import VprBackbone


@runtime_checkable
class VprStrategy(Protocol):
    """The C2 protocol every strategy satisfies."""

    @property
    def descriptor_dim(self) -> int: ...

    def embed_query(self, image: np.ndarray) -> np.ndarray: ...

    def retrieve_topk(self, descriptor: np.ndarray, k: int) -> list[Candidate]: ...


class RetrievalStrategy:
    """Backbone + runtime + (optional) index. embed_query: RGB uint8 HxWx3 -> unit descriptor (D,)."""

    def __init__(self, backbone: VprBackbone, runtime: Runtime, index: DescriptorIndex | None = None):
        self.backbone, self.runtime, self.index = backbone, runtime, index
        self.label = backbone.label
        self.preprocessor = backbone.preprocessor
        self._dim = int(backbone.descriptor_dim)

    @property
    def descriptor_dim(self) -> int:
        return self._dim

    def embed_batch(self, images: list[np.ndarray]) -> np.ndarray:
        batch = self.preprocessor.batch(images)  # raises VprPreprocessError
        try:
            out = self.runtime.forward(batch)
        except VprError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime's own failure becomes a typed error
            raise VprBackboneError(f"{self.label}: forward pass failed: {type(exc).__name__}: {exc}",
                                   backbone=self.label) from exc
        return check_descriptor(np.asarray(out), self._dim, self.label)

    @property
    def default_batch_size(self) -> int:
        """The one batching rule: 1 on CPU (per image 2.5x faster than batches of 16 with 2 threads: 43 vs 109 ms
        for the default at 320 px, BENCHMARKS.md), 32 on CUDA."""
        device = getattr(self.runtime, "device", None)
        return 32 if device is not None and getattr(device, "type", "cpu") == "cuda" else 1

    def embed_many(self, images: Iterable[np.ndarray], batch_size: int | None = None,
                   on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """(N, D) float32 descriptors of a stream of RGB images, embedded `batch_size` at a time (default: the
        device's rule). `on_batch(n)` hears of every n images embedded (progress bars)."""
        batch_size = batch_size or self.default_batch_size
        out, batch = [], []
        for img in images:
            batch.append(img)
            if len(batch) >= batch_size:
                out.append(self.embed_batch(batch))
                if on_batch:
                    on_batch(len(batch))
                batch = []
        if batch:
            out.append(self.embed_batch(batch))
            if on_batch:
                on_batch(len(batch))
        if not out:
            return np.zeros((0, self._dim), np.float32)
        return np.concatenate(out).astype(np.float32)

    def warm_up(self) -> None:
        """One blank frame through preprocess + forward (+ search): builds the calling thread's math
        thread pool and the kernel caches before real frames arrive."""
        h, w = self.preprocessor.input_shape()
        d = self.embed_batch([np.full((h, w, 3), 127, np.uint8)])[0]
        if self.index is not None:
            self.index.search(d, 1)

    def embed_query(self, image: np.ndarray) -> np.ndarray:
        return self.embed_batch([image])[0]

    def retrieve_topk(self, descriptor: np.ndarray, k: int, allowed_tiles: np.ndarray | None = None) -> list[Candidate]:
        if self.index is None:
            raise ConfigurationError("no index loaded; set `index_dir`")
        return self.index.search(np.asarray(descriptor, np.float32), k, allowed_tiles)

    def close(self) -> None:
        self.runtime.close()


def verify_output_shape(backbone: VprBackbone, runtime: Runtime) -> None:
    """Run one dummy frame at load: the engine's output must be (1, descriptor_dim)."""
    h, w = backbone.preprocessor.input_shape()
    try:
        out = runtime.forward(np.zeros((1, 3, h, w), np.float32))
    except Exception as exc:  # noqa: BLE001
        raise ConfigurationError(f"{backbone.label}: test forward at load failed: {exc}") from exc
    if tuple(out.shape) != (1, backbone.descriptor_dim):
        raise ConfigurationError(f"engine output shape mismatch: expected (1, {backbone.descriptor_dim}), "
                                 f"got {tuple(out.shape)}", backbone=backbone.label)


def weights_from_index(index_dir) -> str | None:
    """The corpus-fitted weights file stored in an index folder, if its manifest names one."""
    import json
    import pathlib
    mpath = pathlib.Path(index_dir) / "manifest.json"
    try:
        name = json.loads(mpath.read_text()).get("weights_file")
    except (OSError, ValueError):
        return None  # DescriptorIndex reports the missing/corrupt manifest with the right error type
    return str(pathlib.Path(index_dir) / name) if name else None


def load_strategy(
    backbone: str,
    weights: str | None = None,
    index_dir: str | None = None,
    runtime: str = "pytorch",
    precision: str = "fp32",
    device: str = "cpu",
    backbone_options: dict | None = None,
    installed_runtimes: frozenset[str] | None = None,
    verify_index_weights: bool = True,
    index_memory_budget_mib: float = 0.0,
    narrow_k: int = 0,
) -> RetrievalStrategy:
    """Everything configure needs: backbone, runtime (checked), output-shape check, verified index.

    With no `weights`, an index whose manifest names a `weights_file` (corpus-fitted weights such as
    NetVLAD centroids, written by build-index) supplies them. `narrow_k` > 0: the top `narrow_k` are narrowed to
    the asked k by the index folder's second index (retrieval/narrowing.py; prepare-mission --narrow-backbone)."""
    if narrow_k > 0:
        from vpr_node.core.retrieval.narrowing import NARROW_DIR, NarrowingStrategy, narrow_backbone
        second = narrow_backbone(index_dir) if index_dir else None
        if second is None:
            raise ConfigurationError(f"narrow_k is {narrow_k} but the index folder {index_dir} has no {NARROW_DIR}/ "
                                     "index: prepare the mission with --narrow-backbone NAME, or set narrow_k to 0",
                                     parameter="narrow_k")
        common = dict(runtime=runtime, precision=precision, device=device, installed_runtimes=installed_runtimes,
                      verify_index_weights=verify_index_weights, index_memory_budget_mib=index_memory_budget_mib)
        return NarrowingStrategy(load_strategy(backbone, weights, index_dir, backbone_options=backbone_options,
                                               **common),
                                 load_strategy(second, None, str(pathlib.Path(index_dir) / NARROW_DIR), **common),
                                 narrow_k)
    if runtime == "onnxruntime" and not weights and index_dir and has_exported_model(index_dir):
        return load_exported_strategy(backbone, index_dir, installed_runtimes, verify_index_weights,
                                      index_memory_budget_mib)
    from vpr_node.core.backbones import create_backbone
    if not weights and index_dir:
        weights = weights_from_index(index_dir)
    model = create_backbone(backbone, weights=weights or None, **(backbone_options or {}))
    rt = create_runtime(runtime, model, precision, device, installed_runtimes)
    verify_output_shape(model, rt)
    index = None
    if index_dir:
        index = DescriptorIndex(index_dir, expect=model.identity(), check_weights=verify_index_weights,
                                memory_budget_mib=index_memory_budget_mib)
    return RetrievalStrategy(model, rt, index)


def load_exported_strategy(backbone: str, index_dir, installed: frozenset[str] | None = None,
                           verify_index_weights: bool = True,
                           index_memory_budget_mib: float = 0.0) -> RetrievalStrategy:
    """The model exported into the index folder, on ONNX Runtime, without PyTorch: the index (its manifest
    hashes cover model.onnx) is verified against the exported identity before the model is loaded."""
    installed = installed_runtimes() if installed is None else installed
    if "onnxruntime" not in installed:
        raise ConfigurationError("runtime 'onnxruntime' requested but onnxruntime is not installed "
                                 "(pip install onnxruntime)", runtime="onnxruntime")
    model = exported_backbone(backbone, index_dir)
    index = DescriptorIndex(index_dir, expect=model.identity(), check_weights=verify_index_weights,
                            memory_budget_mib=index_memory_budget_mib)
    verify_exported_files(index_dir, index.manifest)
    rt = OnnxRuntime(onnx_path=str(exported_model_path(index_dir)))
    verify_output_shape(model, rt)
    return RetrievalStrategy(model, rt, index)
