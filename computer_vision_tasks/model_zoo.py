"""Models by name: the paper's CIFAR ResNets / plain CNNs, ``torchvision:<name>`` and
``timm:<name>`` (when timm is installed), each family one entry of :data:`FAMILIES`. The head is
sized to the dataset; ``pretrained`` loads the ImageNet weights but the head's (torchvision: from
the torch hub cache). Grey images: the first 3-channel convolution becomes a 1-channel one
(weights summed over RGB, as timm does). A model that cannot run on the image size is refused.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..common.errors import UsageError
from . import models


@dataclass(frozen=True)
class Family:
    """Models named ``<prefix>:<name>``: ``known(name)``, a ``hint`` where to find the names, and
    ``create(name, num_classes, in_channels, pretrained)``."""

    known: Callable[[str], bool]
    hint: str
    create: Callable[[str, int, int, bool], nn.Module]


def split_name(name: str) -> tuple[str, str]:
    """``"torchvision:resnet18"`` -> ``("torchvision", "resnet18")``; CIFAR names: ``"cifar"``."""
    prefix, sep, base = name.partition(":")
    return (prefix, base) if sep and prefix in FAMILIES else ("cifar", name)


def is_plain_cnn(name: str) -> bool:
    """The plain CNNs train with a constant lr/10; every other model with step decay."""
    return split_name(name)[0] == "cifar" and name not in models.RESNET_BLOCKS


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
                         "--pretrained or use --teacher-checkpoint")


def _adapt_first_conv(model: nn.Module, channels: int) -> None:
    """Replace the first 3-channel Conv2d by a ``channels``-channel one (weights averaged)."""
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


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 pretrained: bool = False) -> nn.Module:
    """A model by name with a ``num_classes`` head for ``in_channels`` x ``image_size``^2 input;
    all but the CIFAR ones are checked by one forward pass on a dummy batch."""
    check_model_name(name)
    family, base = split_name(name)
    if family == "cifar":  # no pretrained weights: see check_pretrained
        return models.create_model(name, num_classes, in_channels, image_size)
    model = FAMILIES[family].create(base, num_classes, in_channels, pretrained)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels, image_size, image_size))
    except Exception as exc:
        raise UsageError(f"{name} does not run on {image_size}x{image_size} images "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); raise "
                         "--image-size or pick another model") from None
    finally:
        model.train(was_training)
    return model


def student_config(name: str, spec) -> dict:
    """The ``config.json`` beside a saved image student: what :func:`from_pretrained` rebuilds it
    from, and the input it expects (``spec``: the dataset's ``data.Spec``)."""
    return {"architecture": name, "num_classes": spec.num_classes, "in_channels": spec.channels,
            "image_size": spec.size, "mean": list(spec.mean), "std": list(spec.std),
            "weights": "best.safetensors"}


def from_pretrained(folder: str | Path, weights: str | None = None) -> nn.Module:
    """The image student saved in ``folder`` (``<out>/student``: ``config.json`` and its weights,
    by default the selected epoch's ``best.safetensors``), in eval mode; no CLI code needed."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = create_model(config["architecture"], config["num_classes"], config["in_channels"],
                         config["image_size"])
    model.load_state_dict(load_file(folder / (weights or config["weights"])))
    return model.eval()


def _timm_model(base: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    try:
        return _timm().create_model(base, pretrained=pretrained, num_classes=num_classes,
                                    in_chans=in_channels)
    except Exception as exc:
        raise UsageError(f"cannot create timm:{base} ({type(exc).__name__}: {exc}); "
                         "pretrained weights need the network once (or the HF cache)") from None


def _torchvision_model(base: str, num_classes: int, in_channels: int,
                       pretrained: bool) -> nn.Module:
    from torchvision.models import get_model, get_model_weights

    model = get_model(base, weights=None, num_classes=num_classes)
    if pretrained:  # every weight but the head's
        weights = get_model_weights(base).DEFAULT
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError offline
            raise UsageError(
                f"pretrained weights of torchvision:{base} are not in the torch hub cache "
                f"({torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}) and could "
                f"not be downloaded ({type(exc).__name__}); they need the network once (or copy "
                "the file there), or drop --pretrained") from None
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items()
                               if k not in own or own[k].shape == v.shape}, strict=False)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _torchvision_known(base: str) -> bool:
    import torchvision

    return base in torchvision.models.list_models(module=torchvision.models)  # classification


FAMILIES: dict[str, Family] = {  # prefix -> family
    "torchvision": Family(_torchvision_known, "not a torchvision classification model; see "
                          "torchvision.models.list_models(module=torchvision.models)",
                          _torchvision_model),
    "timm": Family(lambda base: _timm().is_model(base), "not a timm model; see timm.list_models()",
                   _timm_model),
}
