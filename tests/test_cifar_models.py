"""CIFAR ResNets and plain CNNs: parameter counts of the originals, layer names, input shapes."""

from __future__ import annotations

import pytest
import torch

from annealing_kd.common.errors import UsageError
from annealing_kd.computer_vision_tasks.models import MODEL_NAMES, create_model, num_parameters


def resnet_params(n: int, classes: int, in_ch: int = 3) -> int:
    """Hand count: 3x3 convs without bias, BN (2 per channel), 1x1+BN projections, linear head."""
    conv = lambda i, o, k=3: i * o * k * k  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(in_ch, 16) + bn(16)
    for i, o in ((16, 16), (16, 32), (32, 64)):
        total += conv(i, o) + bn(o) + conv(o, o) + bn(o)  # first block of the stage
        if i != o:
            total += conv(i, o, 1) + bn(o)
        total += (n - 1) * 2 * (conv(o, o) + bn(o))
    return total + 64 * classes + classes


@pytest.mark.parametrize("name,classes,expected", [
    ("resnet8", 10, 78_042),  # published counts of the original code
    ("resnet110", 10, 1_730_714),
    ("resnet20", 10, 272_474),
    ("resnet56", 10, 855_770),
    ("resnet8", 100, 78_042 + 90 * 64 + 90),
])
def test_resnet_parameter_counts(name, classes, expected):
    assert num_parameters(create_model(name, classes)) == expected
    n = {"resnet8": 1, "resnet20": 3, "resnet56": 9, "resnet110": 18}[name]
    assert resnet_params(n, classes) == expected


def test_plane2_parameter_count_by_hand():
    # conv 3->16 (+bias) + BN, conv 16->16 (+bias) + BN, two 2x2 max-pools: 16*8*8 -> 10
    expected = (3 * 16 * 9 + 16 + 32) + (16 * 16 * 9 + 16 + 32) + (16 * 8 * 8 * 10 + 10)
    assert num_parameters(create_model("plane2", 10)) == expected == 13_082
    # CIFAR-100 book: 32 channels
    expected100 = (3 * 32 * 9 + 32 + 64) + (32 * 32 * 9 + 32 + 64) + (32 * 8 * 8 * 100 + 100)
    assert num_parameters(create_model("plane2", 100)) == expected100


def test_grey_28x28_inputs():
    x = torch.randn(2, 1, 28, 28)
    for name in ("resnet8", "plane2", "plane6", "plane8", "plane10"):  # 28 -> 14 -> 7 -> 3 -> 1
        model = create_model(name, 10, in_channels=1, image_size=28).eval()
        assert model(x).shape == (2, 10), name
    assert num_parameters(create_model("resnet8", 10, in_channels=1)) == resnet_params(1, 10, 1)


@pytest.mark.parametrize("name", ["resnet8", "plane2"])
def test_channels_last_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_original_layer_names():
    """The original's state-dict keys, so its {'model_state_dict': ...} checkpoints load."""
    keys = create_model("resnet8", 10).state_dict().keys()
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight", "layer3.0.downsample.1.weight", "fc.bias"} <= set(keys)
    keys = create_model("plane2", 10).state_dict().keys()
    assert {"conv_layers.0.weight", "conv_layers.1.running_var", "fc_layers.0.weight"} <= set(keys)


def test_registry_lists_every_model():
    assert MODEL_NAMES == ["resnet8", "resnet14", "resnet20", "resnet26", "resnet32", "resnet44",
                           "resnet56", "resnet110", "plane2", "plane4", "plane6", "plane8", "plane10"]


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model 'resnet9'.*resnet8"):
        create_model("resnet9", 10)
