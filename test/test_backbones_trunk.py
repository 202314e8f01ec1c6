"""The EfficientNet-Lite0 trunk runs the way its packaged weights were trained (TF "same" padding, inputs
in [-1, 1]): it classifies a real photograph correctly. The earlier wiring (symmetric padding, ImageNet
mean/std) does not, which is why it is not the default."""
import cv2
import numpy as np
import pytest
import torch

from vpr_node.core.backbones.efficientnet import TRUNKS, build_lite0_imagenet

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's sample photo of Grace Hopper in uniform


@pytest.fixture(scope="module")
def photo():
    import matplotlib.cbook as cbook
    img = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _probs(trunk: str, photo) -> torch.Tensor:
    model, _ = build_lite0_imagenet(trunk=trunk)
    mean, std = (np.asarray(v, np.float32) for v in TRUNKS[trunk])
    x = torch.from_numpy(((photo - mean) / std).transpose(2, 0, 1))[None]
    with torch.no_grad():
        return model(x).softmax(-1)[0]


def test_default_trunk_classifies_a_real_photo(photo):
    p = _probs("tf_efficientnet_lite0", photo)
    assert int(p.argmax()) == MILITARY_UNIFORM
    assert float(p[MILITARY_UNIFORM]) > 0.35


def test_earlier_wiring_is_measurably_worse(photo):
    p = _probs("efficientnet_lite0", photo)
    assert int(p.argmax()) != MILITARY_UNIFORM
    assert float(p[MILITARY_UNIFORM]) < 0.25


def test_the_default_backbone_uses_the_tf_wiring():
    from vpr_node.core.backbones import create_backbone
    m = create_backbone("efficientnet_lite0_gem")
    assert m.trunk_name == "tf_efficientnet_lite0"
    assert m.preprocessor.describe()["mean"] == [0.5, 0.5, 0.5] and m.preprocessor.describe()["std"] == [0.5, 0.5, 0.5]
