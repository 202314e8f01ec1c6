"""Weights files: a state_dict saved with a provenance sidecar (<file>.provenance.json: where the weights came
from, licence, SHA-256, whether they are trained), and the strict loading every backbone uses."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import torch
import torch.nn as nn

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file


@dataclasses.dataclass
class Provenance:
    """Where a backbone's weights came from; written beside checkpoints as <file>.provenance.json."""

    source: str
    licence: str = "unknown"
    sha256: str = ""
    trained: bool = True
    notes: str = ""

    @staticmethod
    def sidecar_path(weights: pathlib.Path) -> pathlib.Path:
        return weights.with_name(weights.name + ".provenance.json")

    def write(self, weights: pathlib.Path) -> None:
        self.sidecar_path(weights).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, weights: pathlib.Path) -> "Provenance | None":
        p = cls.sidecar_path(weights)
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))


def save_weights(model: nn.Module, path, provenance: Provenance) -> pathlib.Path:
    """The one way a weights file is written (training, mission adaptation, corpus fitting, conversion):
    torch.save of the model's state_dict, then its provenance sidecar with the file's SHA-256."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    dataclasses.replace(provenance, sha256=sha256_file(path)).write(path)
    return path


def load_project_weights(model: nn.Module, weights, what: str) -> nn.Module:
    """Strict load of a project checkpoint (a state_dict from `vpr train`, `init-vlad`, a converter or
    mission adaptation) and its provenance sidecar."""
    state = torch_load(weights, what)
    model.prepare_for_state(state)
    load_state_dict_strict(model, state, what)
    model.provenance = Provenance.read(pathlib.Path(weights)) or Provenance(source=str(weights),
                                                                            sha256=sha256_file(weights))
    return model


def load_state_dict_strict(model: nn.Module, state: dict, what: str) -> None:
    """Strict load; shape/key problems become a ConfigurationError that names the offending keys."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigurationError(f"{what}: checkpoint does not match the model: {str(exc).splitlines()[0]} "
                                 f"({str(exc)[:600]})") from exc


def torch_load(path: str, what: str) -> dict:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigurationError(f"{what}: weights file {path} does not exist; set the `weights` parameter to a "
                                 f"converted checkpoint (see README 'Backbones and weights')", weights=str(path))
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a config error here
        raise ConfigurationError(f"{what}: could not read weights file {path}: {exc}", weights=str(path)) from exc
