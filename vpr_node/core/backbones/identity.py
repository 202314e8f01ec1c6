"""The identity of a backbone's descriptors: which model, weights and preprocessing made them.

One object for what an index manifest records (`manifest_fields`), what the node expects of an index at
configure (`mismatches`) and what a resumable build keys its finished chunks to. Descriptors are comparable
only when every checked field agrees; provenance is carried along for people, never compared.
"""
from __future__ import annotations

import dataclasses

# identity field -> manifest field
MANIFEST_FIELDS = {"label": "backbone_label", "descriptor_dim": "descriptor_dim", "weights_sha256": "weights_sha256",
                   "preprocessing": "preprocessing"}


@dataclasses.dataclass(frozen=True)
class BackboneIdentity:
    label: str
    descriptor_dim: int
    weights_sha256: str
    preprocessing: dict
    provenance: dict | None = dataclasses.field(default=None, compare=False)

    def manifest_fields(self) -> dict:
        return {**{m: getattr(self, f) for f, m in MANIFEST_FIELDS.items()}, "provenance": self.provenance}

    @classmethod
    def from_manifest(cls, manifest: dict) -> "BackboneIdentity":
        return cls(**{f: manifest[m] for f, m in MANIFEST_FIELDS.items()}, provenance=manifest.get("provenance"))

    def mismatches(self, manifest: dict, check_weights: bool = True) -> list[tuple[str, object, object]]:
        """(manifest field, this identity's value, the manifest's) for every checked field that differs."""
        out = []
        for f, m in MANIFEST_FIELDS.items():
            if f == "weights_sha256" and not check_weights:
                continue
            if getattr(self, f) != manifest.get(m):
                out.append((m, getattr(self, f), manifest.get(m)))
        return out

    def key(self) -> dict:
        """The checked fields as plain JSON (build checkpoints are keyed to it)."""
        return {f: getattr(self, f) for f in MANIFEST_FIELDS}
