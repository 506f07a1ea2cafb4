"""Models by name: the paper's CIFAR ResNets / plain CNNs, ``torchvision:<name>`` (any torchvision
classification model) and ``timm:<name>`` (any timm model, when timm is installed). A model
family is one entry of :data:`FAMILIES`: its prefix, a name check and a constructor.

The classifier head is sized to the dataset. With ``pretrained`` the ImageNet weights are loaded
(torchvision: from the torch hub cache, ``$TORCH_HOME/hub/checkpoints``, downloaded there when
online) except the head, which starts fresh. Grey images: the first 3-channel convolution becomes
a 1-channel one (pretrained weights summed over RGB, as timm does). Small images: the models run
as they are (a resnet18 on 32x32 ends in a 1x1 feature map); one that cannot (e.g. a ViT fixed at
224) is refused with an error naming ``--image-size``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from annealing_kd.common.errors import UsageError
from annealing_kd.computer_vision_tasks import models


@dataclass(frozen=True)
class Family:
    """Models named ``<prefix>:<name>``: ``known(name)`` says whether a name exists (``hint``
    tells where to look), ``create(name, num_classes, in_channels, pretrained)`` builds one
    (any input channels; the CIFAR models and ``--pretrained`` aside, nothing else is asked)."""

    known: Callable[[str], bool]
    hint: str
    create: Callable[[str, int, int, bool], nn.Module]


FAMILIES: dict[str, Family] = {}  # prefix -> family; filled below


def split_name(name: str) -> tuple[str, str]:
    """``"torchvision:resnet18"`` -> ``("torchvision", "resnet18")``; CIFAR names -> ``("cifar", name)``."""
    prefix, sep, base = name.partition(":")
    return (prefix, base) if sep and prefix in FAMILIES else ("cifar", name)


def is_plain_cnn(name: str) -> bool:
    """The plain CNNs train with a constant lr/10; every other model with step decay."""
    return split_name(name)[0] == "cifar" and not models.is_resnet(name)


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)  # classification only


def _timm():
    if importlib.util.find_spec("timm") is None:
        raise UsageError("timm: models need the timm package, which is not installed; run "
                         "pip install 'annealing-kd[timm]' (or pip install timm)")
    import timm

    return timm


def check_model_name(name: str, role: str = "model") -> None:
    family, base = split_name(name)
    if family == "cifar":
        models.check_model_name(name, role)
    elif not FAMILIES[family].known(base):
        raise UsageError(f"unknown {role} {name!r}: {FAMILIES[family].hint}")


def check_pretrained(names: list[str]) -> None:
    """``--pretrained`` applies to the torchvision:/timm: models; refuse it when there are none."""
    if all(split_name(n)[0] == "cifar" for n in names):
        raise UsageError(f"--pretrained: no pretrained weights for {', '.join(names)} (only "
                         f"{'/'.join(f + ':' for f in FAMILIES)} models have them); drop "
                         "--pretrained or use "
                         "--teacher-checkpoint")


def _adapt_first_conv(model: nn.Module, channels: int) -> None:
    """Replace the first 3-channel Conv2d by a ``channels``-channel one (weights summed/averaged)."""
    for parent in model.modules():
        for child_name, conv in parent.named_children():
            if isinstance(conv, nn.Conv2d) and conv.in_channels == 3:
                new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride,
                                conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                                conv.padding_mode)
                with torch.no_grad():
                    new.weight.copy_(conv.weight.sum(1, keepdim=True).repeat(1, channels, 1, 1)
                                     / channels)
                    if conv.bias is not None:
                        new.bias.copy_(conv.bias)
                setattr(parent, child_name, new)
                return


def _pretrained_torchvision_state(base: str) -> dict[str, torch.Tensor]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(base).DEFAULT
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError offline
        raise UsageError(
            f"pretrained weights of torchvision:{base} are not in the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}) and could not "
            f"be downloaded ({type(exc).__name__}); they need the network once (or copy the file "
            "there), or drop --pretrained") from None


def _torchvision(base: str, num_classes: int, pretrained: bool) -> nn.Module:
    from torchvision.models import get_model

    model = get_model(base, weights=None, num_classes=num_classes)
    if pretrained:
        state = _pretrained_torchvision_state(base)
        own = model.state_dict()
        head = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    return model


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 pretrained: bool = False) -> nn.Module:
    """A model by name with a ``num_classes`` head for ``in_channels`` x ``image_size``^2 input."""
    check_model_name(name)
    family, base = split_name(name)
    if family == "cifar":  # no pretrained weights: see check_pretrained
        return models.create_model(name, num_classes, in_channels, image_size)
    model = FAMILIES[family].create(base, num_classes, in_channels, pretrained)
    _check_runs(model, name, in_channels, image_size)
    return model


def _timm_model(base: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    try:
        return _timm().create_model(base, pretrained=pretrained, num_classes=num_classes,
                                    in_chans=in_channels)
    except Exception as exc:
        raise UsageError(f"cannot create timm:{base} ({type(exc).__name__}: {exc}); "
                         "pretrained weights need the network once (or the HF cache)") from None


def _torchvision_model(base: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    model = _torchvision(base, num_classes, pretrained)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _check_runs(model: nn.Module, name: str, channels: int, size: int) -> None:
    """One forward pass on a dummy batch: a model that cannot take the images fails here."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size))
    except Exception as exc:
        raise UsageError(f"{name} does not run on {size}x{size} images ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); raise --image-size or pick "
                         "another model") from None
    finally:
        model.train(was_training)


FAMILIES.update({
    "torchvision": Family(lambda base: base in _torchvision_names(),
                          "not a torchvision classification model; see "
                          "torchvision.models.list_models(module=torchvision.models)",
                          _torchvision_model),
    "timm": Family(lambda base: _timm().is_model(base),
                   "not a timm model; see timm.list_models()", _timm_model),
})
