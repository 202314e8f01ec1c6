"""Typed errors of the VPR pipeline. Each carries a machine-readable `kind` and context."""
from __future__ import annotations


class VprError(Exception):
    """Base class: every error the pipeline raises on purpose."""

    kind = "c2.vpr.error"

    def __init__(self, message: str, **context):
        super().__init__(message)
        self.context = context

    def to_record(self) -> dict:
        return {"kind": self.kind, "error": type(self).__name__, "message": str(self), **self.context}


class VprPreprocessError(VprError):
    """The input frame could not be decoded or preprocessed (corrupt bytes, bad encoding/size)."""

    kind = "c2.vpr.preprocess_error"


class VprBackboneError(VprError):
    """The backbone forward pass failed or produced an invalid descriptor (NaN/inf, wrong shape)."""

    kind = "c2.vpr.backbone_error"


class IndexUnavailableError(VprError):
    """The descriptor index is missing, truncated or corrupt, or a search failed."""

    kind = "c2.vpr.index_error"


class ConfigurationError(VprError):
    """Misconfiguration: raised at configure/activate with a message that says what to fix."""

    kind = "c2.vpr.configuration_error"


class VprPriorError(VprError):
    """A heading, altitude or position prior sample was malformed (NaN, zero-norm quaternion, ...): the
    frame is still served, without that prior."""

    kind = "c2.vpr.prior_error"


class VprVerificationError(VprError):
    """A frame could not be verified: its retrieval result has no candidates, names a tile the index does not hold,
    came without its frame (or the frame without it), or from another index."""

    kind = "c2.vpr.verify_error"
