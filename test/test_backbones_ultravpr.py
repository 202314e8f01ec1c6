"""UltraVPR in the registry: the authors' checkpoint layout (generated here with an independently
re-declared copy of their E2ResNet/se2gem/vlad modules, e2cnn 0.2.3) converts and loads strictly, gives the
authors' outputs, is invariant to 90-degree rotations (45 degrees measured), and exports to ONNX."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from e2cnn import gspaces
from e2cnn import nn as enn

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.convert import convert_checkpoint
from vpr_node.core.errors import ConfigurationError

pytestmark = pytest.mark.slow  # the authors' E2ResNet-50 is built and run on the CPU

SIZE = 97  # odd into all five stride-2 stages (97, 49, 25, 13, 7): rotations by 90 degrees stay exact


# --- the authors' modules, re-declared from cbbhuxx/UltraVPR (mmcv registry and init helpers left out) ---
def regular_feature_type(gspace, planes):
    return enn.FieldType(gspace, [gspace.regular_repr] * int(planes / gspace.fibergroup.order()))


def conv3x3(gspace, inplanes, out_planes, stride=1, padding=1, dilation=1):
    return enn.R2Conv(regular_feature_type(gspace, inplanes), regular_feature_type(gspace, out_planes), 3,
                      stride=stride, padding=padding, dilation=dilation, bias=False, sigma=None,
                      frequencies_cutoff=lambda r: 3 * r)


def conv1x1(gspace, inplanes, out_planes, stride=1):
    return enn.R2Conv(regular_feature_type(gspace, inplanes), regular_feature_type(gspace, out_planes), 1,
                      stride=stride, padding=0, dilation=1, bias=False, sigma=None, frequencies_cutoff=lambda r: 3 * r)


class AuthorsBottleneck(enn.EquivariantModule):
    def __init__(self, in_channels, out_channels, expansion=4, stride=1, downsample=None, gspace=None):
        super().__init__()
        self.in_type = regular_feature_type(gspace, in_channels)
        self.out_type = regular_feature_type(gspace, out_channels)
        mid = out_channels // expansion
        self.add_module("bn1", enn.InnerBatchNorm(regular_feature_type(gspace, mid)))
        self.add_module("bn2", enn.InnerBatchNorm(regular_feature_type(gspace, mid)))
        self.add_module("bn3", enn.InnerBatchNorm(regular_feature_type(gspace, out_channels)))
        self.conv1 = conv1x1(gspace, in_channels, mid)
        self.relu1 = enn.ReLU(self.conv1.out_type, inplace=True)
        self.conv2 = conv3x3(gspace, mid, mid, stride=stride)
        self.relu2 = enn.ReLU(self.conv2.out_type, inplace=True)
        self.conv3 = conv1x1(gspace, mid, out_channels)
        self.relu3 = enn.ReLU(self.conv3.out_type, inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu3(out)

    def evaluate_output_shape(self, input_shape):
        return input_shape


class AuthorsE2ResNet50(nn.Module):
    def __init__(self, orientation=8, middle_channels=2048):
        super().__init__()
        self.gspace = gspaces.Rot2dOnR2(orientation)
        self.in_type = enn.FieldType(self.gspace, [self.gspace.trivial_repr] * 3)
        self.gpool = enn.GroupPooling(regular_feature_type(self.gspace, middle_channels))
        self.conv1 = enn.R2Conv(self.in_type, regular_feature_type(self.gspace, 64), 7, stride=2, padding=3,
                                bias=False, sigma=None, frequencies_cutoff=lambda r: 3 * r)
        self.add_module("bn1", enn.InnerBatchNorm(regular_feature_type(self.gspace, 64)))
        self.relu = enn.ReLU(self.conv1.out_type, inplace=True)
        self.maxpool = enn.PointwiseMaxPool(self.conv1.out_type, kernel_size=3, stride=2, padding=1)
        cin, cout = 64, 256
        for i, (n, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2), strict=True)):
            ds = enn.SequentialModule(conv1x1(self.gspace, cin, cout, stride=stride),
                                      enn.InnerBatchNorm(regular_feature_type(self.gspace, cout)))
            blocks = [AuthorsBottleneck(cin, cout, stride=stride, downsample=ds, gspace=self.gspace)]
            blocks += [AuthorsBottleneck(cout, cout, gspace=self.gspace) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin, cout = cout, cout * 2

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(enn.GeometricTensor(x, self.in_type)))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.gpool(x).tensor


class AuthorsGeM(nn.Module):
    def __init__(self, p=3, eps=1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1. / self.p)


class AuthorsSe2Gem(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.gem = AuthorsGeM()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        return F.normalize(self.fc(self.gem(x).flatten(1)), p=2, dim=1)


class AuthorsVlad(nn.Module):  # the training-only "upscale" head: in the checkpoint, not in the deployed model
    def __init__(self, num_classes=63, dim=256):
        super().__init__()
        self.centroids = nn.Parameter(torch.rand(num_classes, dim))


class AuthorsUltraVpr(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = AuthorsE2ResNet50()
        self.aggregator = AuthorsSe2Gem(256, 256)
        self.upscale = AuthorsVlad()

    def forward(self, x):
        return self.aggregator(self.backbone(x))


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    torch.manual_seed(0)
    m = AuthorsUltraVpr()
    with torch.no_grad():  # trained-looking BN statistics and GeM p, so the check is not trivially near zero
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
        m.aggregator.gem.p.fill_(2.7)
    m.eval()
    path = tmp_path_factory.mktemp("ultra") / "model_best.pth.tar"
    torch.save({"epoch": 12, "state_dict": m.state_dict(), "recalls": {}, "best_score": 0.5, "optimizer": {},
                "parallel": False}, path)
    return m, path


@pytest.fixture(scope="module")
def converted(authors, tmp_path_factory):
    out = tmp_path_factory.mktemp("ultra_conv") / "ultravpr.pt"
    info = convert_checkpoint("ultravpr", authors[1], out, "test checkpoint in the authors' layout", "MIT",
                              {"input_size": SIZE})
    assert info["descriptor_dim"] == 256 and info["trained"]
    return create_backbone("ultravpr", weights=str(out), input_size=SIZE)


def test_authors_checkpoint_loads_strictly_and_matches_their_forward(authors, converted):
    m, _ = authors
    ours = set(converted.state_dict())
    theirs = {k for k in m.state_dict() if not k.startswith("upscale.")}
    assert ours == theirs  # the authors' key layout exactly, training-only head dropped
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = m(x)
        got = converted(x)
    assert got.shape == (2, 256) and torch.allclose(got, ref, atol=2e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)


def test_rotation_invariance(converted):
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        d = converted(x)
        for k in (1, 2, 3):
            assert F.cosine_similarity(d, converted(torch.rot90(x, k, (2, 3)))).item() > 0.9999
        # 45 degrees: not a symmetry of the pixel grid; measured (printed), expected high but not exact
        import cv2
        img = x[0].permute(1, 2, 0).numpy()
        r45 = cv2.warpAffine(img, cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 45, 1.0), (SIZE, SIZE),
                             borderMode=cv2.BORDER_REFLECT)
        c45 = F.cosine_similarity(d, converted(torch.from_numpy(r45).permute(2, 0, 1)[None])).item()
    print(f"ultravpr cosine(frame, frame rotated 45 deg) = {c45:.4f}")
    assert c45 > 0.5


def test_onnx_export_equals_pytorch(converted, tmp_path):
    import onnxruntime as ort

    from vpr_node.core.retrieval.runtimes import export_onnx
    path = export_onnx(converted, (SIZE, SIZE), tmp_path / "ultravpr.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = converted(x).numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == (1, 256) and np.allclose(out, ref, atol=1e-4)


def test_bad_options_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="encoder_dim"):
        create_backbone("ultravpr", encoder_dim=128)
    with pytest.raises(ConfigurationError, match="depth"):
        create_backbone("ultravpr", depth=7)


def test_default_input_keeps_90_degree_rotations_exact():
    from vpr_node.core.backbones.ultravpr import DEFAULT_INPUT_SIZE
    size = DEFAULT_INPUT_SIZE
    for _ in range(5):  # conv1 and max-pool, then layer2..4, all stride 2
        assert size % 2 == 1
        size = math.floor((size - 1) / 2) + 1
