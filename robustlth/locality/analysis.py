"""Locality of a first-layer mask of a fully connected network on images (Pellegrini & Biroli).

A mask is a boolean tensor (units, channels, height, width). Pair statistics are autocorrelations of the
mask with itself, computed with FFTs over all units at once: no loops over pairs or units.
"""
from __future__ import annotations

import torch

IMAGE_SHAPE = (3, 32, 32)


def as_images(first_layer_mask: torch.Tensor, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """(units, inputs) or (units, C, H, W) -> boolean (units, C, H, W); inputs are flattened CHW images."""
    m = first_layer_mask.detach().to("cpu", torch.bool)
    if m.dim() == 2:
        if m.shape[1] != image_shape[0] * image_shape[1] * image_shape[2]:
            raise ValueError(f"a first-layer mask with {m.shape[1]} inputs does not fit images of shape {image_shape}")
        m = m.view(m.shape[0], *image_shape)
    if m.dim() != 4:
        raise ValueError(f"expected a (units, inputs) or (units, C, H, W) mask, got shape {tuple(m.shape)}")
    return m


def _autocorrelation(spectra: torch.Tensor, size: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """Inverse of summed power spectra, cropped to displacements [-(h-1), h-1] x [-(w-1), w-1]."""
    corr = torch.fft.irfft2(spectra, s=size)
    rows = torch.cat([torch.arange(size[0] - h + 1, size[0]), torch.arange(h)])
    cols = torch.cat([torch.arange(size[1] - w + 1, size[1]), torch.arange(w)])
    return corr[rows][:, cols]


def displacement_histograms(mask: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(S_sc, S_dc): counts of ordered pairs of distinct surviving connections of the same unit, by their
    displacement (Δy, Δx) = (y_b − y_a, x_b − x_a), index [Δy + H − 1, Δx + W − 1]; S_sc for pairs in the
    same colour channel, S_dc for pairs in different channels. Both are symmetric, int64, (2H−1, 2W−1)."""
    m = as_images(mask)
    _, _, h, w = m.shape
    size = (2 * h, 2 * w)  # zero padding: no wrap-around for displacements up to H-1, W-1
    same = torch.zeros(size[0], size[1] // 2 + 1, dtype=torch.float64)
    every = torch.zeros_like(same)
    for i in range(0, m.shape[0], chunk):
        f = torch.fft.rfft2(m[i:i + chunk].double(), s=size)  # (u, C, 2H, W+1)
        same += f.abs().square().sum((0, 1))
        every += f.sum(1).abs().square().sum(0)
    same_pairs = _autocorrelation(same, size, h, w).round().long()  # includes each connection with itself
    all_pairs = _autocorrelation(every, size, h, w).round().long()
    s_dc = all_pairs - same_pairs
    s_sc = same_pairs.clone()
    s_sc[h - 1, w - 1] -= int(m.sum())
    return s_sc, s_dc


def dense_histograms(image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline of a fully connected unit: the broad triangular profile (H−|Δy|)(W−|Δx|)."""
    return displacement_histograms(torch.ones(1, *image_shape, dtype=torch.bool))


def window_fraction(hist: torch.Tensor, radius: int) -> float:
    """Fraction of the pairs with max(|Δy|, |Δx|) <= radius."""
    cy, cx = (hist.shape[0] - 1) // 2, (hist.shape[1] - 1) // 2
    total = float(hist.sum())
    if total == 0:
        return float("nan")
    return float(hist[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1].sum()) / total


def mean_distance(hist: torch.Tensor) -> float:
    """Mean Euclidean length of the displacements."""
    cy, cx = (hist.shape[0] - 1) // 2, (hist.shape[1] - 1) // 2
    dy = torch.arange(hist.shape[0], dtype=torch.float64)[:, None] - cy
    dx = torch.arange(hist.shape[1], dtype=torch.float64)[None, :] - cx
    total = float(hist.sum())
    return float((hist * (dy.square() + dx.square()).sqrt()).sum()) / total if total else float("nan")


def locality_scores(mask: torch.Tensor, radius: int = 3) -> dict:
    """Scalar summaries of S_sc and S_dc. `locality_*` is the fraction of pairs within the (2r+1)^2 window
    divided by the same fraction for a dense unit: 1 for dense and (in expectation) random masks, above 1 when
    surviving connections cluster in space."""
    s_sc, s_dc = displacement_histograms(mask)
    d_sc, d_dc = dense_histograms(tuple(as_images(mask).shape[1:]))
    return {"locality_sc": window_fraction(s_sc, radius) / window_fraction(d_sc, radius),
            "locality_dc": window_fraction(s_dc, radius) / window_fraction(d_dc, radius),
            "mean_dist_sc": mean_distance(s_sc), "mean_dist_dc": mean_distance(s_dc),
            "pairs_sc": int(s_sc.sum()), "pairs_dc": int(s_dc.sum())}


def in_degree(mask: torch.Tensor) -> torch.Tensor:
    """Surviving input connections of each unit."""
    return as_images(mask).flatten(1).sum(1)


def coverage(mask: torch.Tensor) -> torch.Tensor:
    """Surviving outgoing connections of each input pixel and channel, (C, H, W)."""
    return as_images(mask).sum(0)


def shuffle_units(mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The mask with each input's connections dealt to units chosen at random: the coverage map (connections per
    input pixel) is kept exactly, any structure within a unit is destroyed. Locality left in this baseline comes
    from where the surviving inputs are, not from units having local receptive fields."""
    m = as_images(mask)
    flat = m.flatten(1)
    order = torch.rand(flat.shape, generator=torch.Generator().manual_seed(seed)).argsort(0)
    return flat.gather(0, order).view_as(m)


def most_connected(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the `n` units with the largest in-degree (ties: lower index first)."""
    deg = in_degree(mask)
    return torch.argsort(-deg, stable=True)[:n]
