"""The zoo's architectures by name: `zoo_arch("dm-wrn-70-16")` -> a `ZooArch` (how to build the
module, its title for model cards, the input normalization its checkpoints expect).

Names (depth D = 6n + 4 and width W any valid pair for the WideResNets):

- ``wrn-D-W`` (28-10, 34-10, 34-20, 70-16, ...): TRADES / Zagoruyko layout (``block1.layer.0.bn1``,
  ``fc``), ReLU, no normalization inside;
- ``dm-wrn-D-W`` (28-10, 34-10, 70-16, 106-16, ...): DeepMind layout (``layer.0.block.0.batchnorm_0``,
  ``logits``), Swish, CIFAR mean / std inside; ``dm-wrn-D-W-relu``: the same with ReLU;
- ``dm-preact-resnet-18``: DeepMind layout (``layer_0.0.conv_2d_1``), Swish, CIFAR mean / std;
- ``preact-resnet-18``: pytorch-cifar layout (``layer1.0.bn1``, ``linear``), ReLU, none;
  ``preact-resnet-18-v2``: the same with ``bn`` before ``linear`` and the shortcut on the activation;
- ``resnet-18``, ``resnet-34``, ``resnet-50``: pytorch-cifar layout (``layer1.0.shortcut.0``,
  ``linear``), ReLU, none.

"none" means the zoo's module takes images in [0, 1] as they are; entries whose wrapper
normalizes store ``mu`` / ``sigma`` in the checkpoint, which `load_zoo_model` reads (or give
``mean`` / ``std``). CIFAR mean / std are CIFAR-100's when the model has 100 classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.models.zoo.deepmind import DMPreActResNet, DMWideResNet
from robustlab.models.zoo.resnet import BasicBlock, Bottleneck, PreActBlock, ResNet
from robustlab.models.zoo.wideresnet import WideResNet

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
INPUT_SHAPE = (3, 32, 32)
"""Every zoo architecture here is CIFAR-style: 3 x 32 x 32 images."""


@dataclass(frozen=True)
class ZooArch:
    """A zoo architecture: `build(num_classes)` -> the bare module (the zoo's parameter names);
    `title` as the zoo's model cards write it; `cifar_normalized`: the checkpoints expect CIFAR
    mean / std applied inside the model; `ignored`: key prefixes the published definition builds
    but never uses in its forward pass (dropped when loading)."""

    name: str
    title: str
    build: Callable[[int], nn.Module]
    cifar_normalized: bool = False
    ignored: tuple[str, ...] = ()

    def normalization(self, num_classes: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The (mean, std) the checkpoints expect, or None (inputs in [0, 1] as they are)."""
        if not self.cifar_normalized:
            return None
        return (CIFAR100_MEAN, CIFAR100_STD) if num_classes == 100 else (CIFAR10_MEAN, CIFAR10_STD)


ZOO: Registry[ZooArch] = Registry("zoo architecture", also=("wrn-D-W", "dm-wrn-D-W[-relu] (depth 6n + 4, width >= 1)"))
"""The architectures of fixed shape (the WideResNets are parsed from their names); a plugin adds one
with ``ZOO.register(name, ZooArch(...))``."""
for _arch in (
    ZooArch("dm-preact-resnet-18", "PreActResNet-18", lambda c: DMPreActResNet(c), cifar_normalized=True),
    ZooArch("preact-resnet-18", "PreActResNet-18", lambda c: ResNet(PreActBlock, (2, 2, 2, 2), c)),
    ZooArch("preact-resnet-18-v2", "PreActResNet-18", lambda c: ResNet(
        PreActBlock, (2, 2, 2, 2), c, final_bn=True, activated_shortcut=True)),
    ZooArch("resnet-18", "ResNet-18", lambda c: ResNet(BasicBlock, (2, 2, 2, 2), c)),
    ZooArch("resnet-34", "ResNet-34", lambda c: ResNet(BasicBlock, (3, 4, 6, 3), c)),
    ZooArch("resnet-50", "ResNet-50", lambda c: ResNet(Bottleneck, (3, 4, 6, 3), c)),
):
    ZOO.register(_arch.name, _arch)
_WRN = re.compile(r"(dm-)?wrn-(\d+)-(\d+)(-relu)?")
EXAMPLES = ("wrn-28-10", "wrn-34-10", "wrn-34-20", "wrn-70-16", "dm-wrn-28-10", "dm-wrn-34-10", "dm-wrn-70-16",
            "dm-wrn-28-10-relu", *ZOO.names())
"""Names listed in help texts and errors (any valid WideResNet depth / width is accepted)."""


def zoo_arch(name: str) -> ZooArch:
    """The architecture called `name` (case-insensitive); `ConfigError` listing the choices."""
    key = str(name).strip().lower()
    match = _WRN.fullmatch(key)
    if key in ZOO or match is None:
        return ZOO.get(name)  # `UnknownNameError` listing the names, for anything else
    dm, depth, width, relu = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    if depth < 10 or (depth - 4) % 6 or width < 1:
        raise ConfigError(f"zoo architecture {name!r}: a WideResNet needs depth 6n + 4 (10, 16, 22, 28, 34, ...) "
                          f"and width >= 1, got depth {depth}, width {width}")
    title = f"WideResNet-{depth}-{width}"
    if dm:
        act: Callable[[], nn.Module] = nn.ReLU if relu else nn.SiLU
        return ZooArch(key, title, partial(_dm_wrn, depth, width, act), cifar_normalized=True)
    if relu:
        raise ConfigError(f"zoo architecture {name!r}: -relu is a variant of dm-wrn (wrn-D-W is always ReLU)")
    return ZooArch(key, title, partial(_wrn, depth, width), ignored=("sub_block1.",))


def _wrn(depth: int, width: int, num_classes: int) -> nn.Module:
    return WideResNet(depth, width, num_classes)


def _dm_wrn(depth: int, width: int, act: Callable[[], nn.Module], num_classes: int) -> nn.Module:
    return DMWideResNet(depth, width, num_classes, act)
