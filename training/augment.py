"""Batched, on-the-fly augmentation of float tiles (N x 1 x 28 x 28, ink high).

Everything is one tensor op per batch, so augmentation costs little beside the model on a
CPU. Handwriting varies by slant, size, position, local wobble and pen width; each op
models one of those.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_grid(n: int, generator: torch.Generator, rotate_deg: float = 10.0,
                       scale: tuple[float, float] = (0.85, 1.1), shear: float = 0.25,
                       translate: float = 0.08) -> torch.Tensor:
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (hi - lo) + lo

    angle = uniform(-rotate_deg, rotate_deg) * math.pi / 180
    s = uniform(*scale)
    sh = uniform(-shear, shear)
    tx, ty = uniform(-translate, translate), uniform(-translate, translate)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Inverse map (output -> input) of rotate * shear * scale.
    theta = torch.stack([
        torch.stack([cos / s, (-sin + sh * cos) / s, tx], dim=1),
        torch.stack([sin / s, (cos + sh * sin) / s, ty], dim=1),
    ], dim=1)
    return F.affine_grid(theta, [n, 1, 28, 28], align_corners=False)


def elastic_offsets(n: int, generator: torch.Generator, strength: float = 0.06) -> torch.Tensor:
    """Smooth random displacements: coarse 4x4 noise, upsampled, as a wobble of the pen."""
    coarse = torch.randn(n, 2, 4, 4, generator=generator) * strength
    fine = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False)
    return fine.permute(0, 2, 3, 1)


def stroke_jitter(x: torch.Tensor, generator: torch.Generator, p_thick: float = 0.2,
                  p_thin: float = 0.15) -> torch.Tensor:
    """Dilate or erode some tiles by one pixel: pens and scanners vary stroke width."""
    r = torch.rand(x.shape[0], generator=generator).view(-1, 1, 1, 1)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    # Erosion is only applied where it does not wipe out thin strokes entirely.
    thin = torch.where(thin.amax(dim=(2, 3), keepdim=True) > 0.5, thin, x)
    return torch.where(r < p_thick, thick, torch.where(r < p_thick + p_thin, thin, x))


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """All of the above; `strength` scales every magnitude and probability (0 = off)."""
    s = strength
    grid = random_affine_grid(x.shape[0], generator, rotate_deg=10.0 * s, scale=(1 - 0.15 * s, 1 + 0.1 * s),
                              shear=0.25 * s, translate=0.08 * s)
    grid = grid + elastic_offsets(x.shape[0], generator, strength=0.06 * s)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return stroke_jitter(x, generator, p_thick=0.2 * s, p_thin=0.15 * s)
