"""Per-backbone preprocessing. Coupled to the weights (input size, mean/std), not a config knob. NumPy and OpenCV
only (PyTorch only where a tensor is asked for), so an exported model runs without PyTorch."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from vpr_node.core.errors import VprPreprocessError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackbonePreprocessor:
    """RGB uint8 (H, W, 3) -> normalised NCHW float tensor.

    `crop="center_square"` crops the largest centred square (optionally about a calibrated principal
    point) before the resize, so a 16:9 nav-camera frame keeps its centre and the tile stays square.
    """

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: str = "center_square"  # or "none"
    dtype: str = "float32"  # of the tensor __call__ gives (a torch dtype name)

    def input_shape(self) -> tuple[int, int]:
        return self.size

    def describe(self) -> dict:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std), "crop": self.crop}

    def to_array(self, rgb: np.ndarray, principal_point: tuple[float, float] | None = None) -> np.ndarray:
        """Crop + resize + normalise one frame; returns float32 (3, H, W)."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            shape = getattr(rgb, "shape", None)
            raise VprPreprocessError(
                f"expected an RGB uint8 HxWx3 image, got shape={shape} dtype={getattr(rgb, 'dtype', None)}"
            )
        h, w = rgb.shape[:2]
        if h < 8 or w < 8:
            raise VprPreprocessError(f"image {w}x{h} is too small to embed (minimum 8x8)", width=w, height=h)
        if self.crop == "center_square":
            s = min(h, w)
            cx, cy = principal_point if principal_point else (w / 2.0, h / 2.0)
            x0 = int(round(min(max(cx - s / 2.0, 0), w - s)))
            y0 = int(round(min(max(cy - s / 2.0, 0), h - s)))
            rgb = rgb[y0:y0 + s, x0:x0 + s]
        th, tw = self.size
        interp = cv2.INTER_AREA if rgb.shape[0] > th else cv2.INTER_LINEAR
        img = cv2.resize(rgb, (tw, th), interpolation=interp).astype(np.float32) / 255.0
        img = (img - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    @classmethod
    def from_description(cls, d: dict) -> "BackbonePreprocessor":
        """The inverse of describe() (an exported model's preprocessing, read from its index folder)."""
        return cls(size=tuple(int(v) for v in d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]), crop=d["crop"])

    def batch(self, images, principal_point=None) -> np.ndarray:
        """One image or a list of images -> (N, 3, H, W) float32 array."""
        if isinstance(images, np.ndarray):
            images = [images]
        return np.stack([self.to_array(im, principal_point) for im in images])

    def __call__(self, images, principal_point=None):
        """One image or a list of images -> (N, 3, H, W) torch tensor of `dtype`."""
        import torch
        return torch.from_numpy(self.batch(images, principal_point)).to(getattr(torch, self.dtype))


