"""A backbone exported into its index folder (`model.onnx` + `model_onnx.json`): the node runs it on ONNX Runtime
without importing PyTorch (about 500 MiB less resident memory, BENCHMARKS.md "Where the node's memory goes").

`export_to_index` (pre-flight, needs PyTorch) exports the strategy's model, checks on test frames that ONNX
Runtime gives the PyTorch descriptors, and records both files' SHA-256 in the manifest, so the node's index
verification covers them. `exported_backbone` (in flight, no PyTorch) reads what the export recorded: the
backbone's identity (label, dimension, weights hash, preprocessing: what the index was built with) and its
provenance. The preprocessing is NumPy/OpenCV (backbones/preprocess.py)."""
from __future__ import annotations

import dataclasses
import json
import pathlib

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.folder import add_to_manifest
from vpr_node.core.io.hashing import sha256_file

ONNX_FILE = "model.onnx"
ONNX_META = "model_onnx.json"


@dataclasses.dataclass(frozen=True)
class ExportedProvenance:
    source: str
    trained: bool = True
    notes: str = ""
    licence: str = "unknown"


@dataclasses.dataclass
class ExportedBackbone:
    """What the strategy needs of a backbone, read from the index folder instead of built with PyTorch."""

    label: str
    descriptor_dim: int
    preprocessor: BackbonePreprocessor
    provenance: ExportedProvenance
    identity_: BackboneIdentity

    def identity(self) -> BackboneIdentity:
        return self.identity_


def has_exported_model(index_dir) -> bool:
    d = pathlib.Path(index_dir)
    return (d / ONNX_FILE).is_file() and (d / ONNX_META).is_file()


def exported_model_path(index_dir) -> pathlib.Path:
    return pathlib.Path(index_dir) / ONNX_FILE


def exported_backbone(backbone: str, index_dir) -> ExportedBackbone:
    """The exported model's backbone, as recorded at export; `backbone` (the node's parameter) must name it."""
    try:
        meta = json.loads((pathlib.Path(index_dir) / ONNX_META).read_text())
        identity = BackboneIdentity.from_manifest(meta["identity"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{ONNX_META} in {index_dir} is unreadable ({exc}): export the model again "
                                 f"(vpr export-onnx --into-index {index_dir} ...)") from exc
    if identity.label != backbone:
        raise ConfigurationError(f"the model exported into {index_dir} is {identity.label!r}, the node's backbone "
                                 f"is {backbone!r}: set backbone to {identity.label!r} or export {backbone!r}",
                                 parameter="backbone", expected=backbone, actual=identity.label)
    prov = meta["identity"].get("provenance") or {}
    return ExportedBackbone(identity.label, identity.descriptor_dim,
                            BackbonePreprocessor.from_description(identity.preprocessing),
                            ExportedProvenance(prov.get("source", "exported"), bool(prov.get("trained", True)),
                                               prov.get("notes", ""), prov.get("licence", "unknown")), identity)


def verify_exported_files(index_dir, manifest: dict) -> None:
    """model.onnx and model_onnx.json as the export recorded them in the manifest; else IndexUnavailableError."""
    for name in (ONNX_FILE, ONNX_META):
        path = pathlib.Path(index_dir) / name
        want, got = manifest.get("files", {}).get(name), sha256_file(path)
        if want != got:
            raise IndexUnavailableError(f"{path} is not the file the export recorded (sha256 {got[:12]}... != "
                                        f"manifest {str(want)[:12]}...): export the model again", file=name)


def export_to_index(strategy, index_dir, n_frames: int = 4, seed: int = 0) -> dict:
    """Export `strategy`'s model (a PyTorch strategy over this index: its identity is the index's) into the index
    folder; refuse when ONNX Runtime's descriptors differ from PyTorch's by more than PARITY_TOLERANCE."""
    from vpr_node.core.retrieval.runtimes import OnnxRuntime, check_parity, export_onnx
    index_dir = pathlib.Path(index_dir)
    model = strategy.backbone
    identity = model.identity()
    path = export_onnx(model, model.preprocessor.input_shape(), index_dir / ONNX_FILE)
    try:
        diff = check_parity(model, OnnxRuntime(onnx_path=str(path)), n_frames, seed)
    except ConfigurationError:
        path.unlink()
        raise
    meta = {"identity": identity.manifest_fields(), "max_abs_diff_vs_pytorch": diff, "parity_frames": n_frames}
    (index_dir / ONNX_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    add_to_manifest(index_dir, ONNX_FILE)
    add_to_manifest(index_dir, ONNX_META)
    return {"onnx": str(path), **meta}
