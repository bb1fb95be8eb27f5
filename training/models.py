"""The EMNIST-47 models: the original app's baseline, the default, and two faster variants
of the default that were tried for speed (`lean`, `fast`; figures in the README). All take
float tiles in 0..1 (N x 1 x 28 x 28, upright, white ink on black) and normalize inside, so
the handler never has to know the statistics.

This file is copied into the model archive as its model file: keep it self-contained.
"""
from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 47


class Normalize(nn.Module):
    def __init__(self, mean: float = 0.5, std: float = 0.5):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BaselineNet(nn.Module):
    """The original desktop app's CNN, kept as the documented baseline (Adam 1e-3)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.net = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, 36, 5), nn.LeakyReLU(), nn.MaxPool2d(2),    # 28 -> 24 -> 12
            nn.Conv2d(36, 72, 3), nn.LeakyReLU(), nn.MaxPool2d(2),   # 12 -> 10 -> 5
            nn.Flatten(),
            nn.Linear(72 * 5 * 5, 200), nn.LeakyReLU(), nn.Dropout(0.4),
            nn.Linear(200, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class EmnistNet(nn.Module):
    """The default: a small VGG-style CNN with batch norm (about 0.5M parameters).

    Conv stages at 28, 14 and 7 px, each ending in a 2x2 max pool; `stages` gives each
    stage's output channels per 3x3 convolution. Batch norm and the wider head buy the
    accuracy; few convolutions at 28 px keep it fast on one CPU thread.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, stages=((32,), (64, 64), (128,)), hidden: int = 256,
                 dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        channels = 1
        for stage in stages:
            for out in stage:
                layers += conv_bn(channels, out)
                channels = out
            layers.append(nn.MaxPool2d(2))                           # 28 -> 14 -> 7 -> 3
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * 3 * 3, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LeanNet(EmnistNet):
    """The default less its second 14-px convolution: 1.8x its images/s (see the README)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__(num_classes, stages=((32,), (64,), (128,)))


class FastNet(EmnistNet):
    """The default with its second 14-px convolution moved to 7 px, where it costs a quarter:
    1.45x its images/s (see the README)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__(num_classes, stages=((32,), (48,), (96, 128)))


MODELS = {"baseline": BaselineNet, "default": EmnistNet, "lean": LeanNet, "fast": FastNet}


def build_model(name: str) -> nn.Module:
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
