"""Typed errors of the VPR pipeline. Each carries a machine-readable `kind` and context."""
from __future__ import annotations


class VprError(Exception):
    """Base class: every error the pipeline raises on purpose."""

    kind = "vpr.error"

    def __init__(self, message: str, **context):
        super().__init__(message)
        self.context = context

    def to_record(self) -> dict:
        return {"kind": self.kind, "error": type(self).__name__, "message": str(self), **self.context}


class VprPreprocessError(VprError):
    """The input frame could not be decoded or preprocessed (corrupt bytes, bad encoding/size)."""

    kind = "vpr.preprocess_error"


class VprBackboneError(VprError):
    """The backbone forward pass failed or produced an invalid descriptor (NaN/inf, wrong shape)."""

    kind = "vpr.backbone_error"


class IndexUnavailableError(VprError):
    """The descriptor index is missing, truncated or corrupt, or a search failed."""

    kind = "vpr.index_error"


class ConfigurationError(VprError):
    """Misconfiguration: raised at configure/activate with a message that says what to fix."""

    kind = "vpr.configuration_error"
