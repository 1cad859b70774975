"""Patch candidates and batched patch cropping.

A patch location is a pair ``(y, x)`` in ``[0, 1]``: the patch's top-left corner sits at pixel
``floor(y * (H - P)), floor(x * (W - P))``, so 0 is the top/left border and 1 the bottom/right one
(the official code's convention). A G x G grid of candidates spaces these uniformly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def candidate_grid(grid_size: int, *, device: torch.device | None = None) -> torch.Tensor:
    """``(G*G, 2)`` normalised ``(y, x)`` locations, row-major (index = row * G + col)."""
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    if grid_size == 1:
        axis = torch.full((1,), 0.5, device=device)
    else:
        axis = torch.linspace(0.0, 1.0, grid_size, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([yy.flatten(), xx.flatten()], dim=-1)


def pixel_offsets(locations: torch.Tensor, frame_hw: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Normalised ``(..., 2)`` locations to integer top-left pixel offsets ``(..., 2)``."""
    h, w = frame_hw
    loc = locations.clamp(0.0, 1.0)
    # a small epsilon keeps exact grid points (k/(G-1) * span) from flooring one pixel short;
    # Python scalars, not a tensor of spans: a host-to-device copy would break CUDA graph capture
    y = torch.floor(loc[..., 0] * (h - patch_size) + 1e-4).clamp_(max=h - patch_size)
    x = torch.floor(loc[..., 1] * (w - patch_size) + 1e-4).clamp_(max=w - patch_size)
    return torch.stack((y, x), dim=-1).long()


def crop_patches(frames: torch.Tensor, offsets: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut one ``P x P`` patch per image with a single indexing op (no Python loop over samples).

    Args:
        frames: ``(N, C, H, W)`` images.
        offsets: ``(N, 2)`` integer top-left ``(y, x)`` pixel offsets.
        patch_size: P.
    Returns:
        ``(N, C, P, P)`` patches, exactly ``frames[n, :, y:y+P, x:x+P]``, in the memory format of
        ``frames`` (channels_last frames give channels_last patches).
    """
    n, c, h, w = frames.shape
    if patch_size > h or patch_size > w:
        raise ValueError(f"patch_size={patch_size} is larger than the {h}x{w} frame")
    # every P x P window as a strided view (no copy); indexing it copies only the chosen patches,
    # ~2x faster than a gather, which also reads an int64 index per output element
    windows = frames.unfold(2, patch_size, 1).unfold(3, patch_size, 1)  # (N, C, H-P+1, W-P+1, P, P)
    return windows[torch.arange(n, device=frames.device), :, offsets[:, 0], offsets[:, 1]]


def sample_patches(
    frames: torch.Tensor, locations: torch.Tensor, patch_size: int, sides: torch.Tensor | None = None
) -> torch.Tensor:
    """Differentiable crop (AdaFocusV2, Uni-AdaFocus): ``P x P`` patches at continuous ``locations``, by
    bilinear interpolation, so that gradients reach the locations (and through them pi).

    Args:
        frames: ``(N, C, H, W)`` images.
        locations: ``(N, 2)`` normalised ``(y, x)`` in ``[0, 1]``: the window's top-left corner sits
            at pixel ``(y * (H - h), x * (W - w))``, the convention of :func:`pixel_offsets` without
            the floor; at whole-pixel corners a P x P window equals :func:`crop_patches`'s patch.
        patch_size: P, the output side.
        sides: ``(N, 2)`` window ``(h, w)`` in pixels (Uni-AdaFocus's patch scale), resampled to P x P;
            default P (no scaling).
    Returns:
        ``(N, C, P, P)`` patches; with ``sides=None`` output pixel ``(i, j)`` is the input at ``(y0 + i, x0 + j)``.
    """
    n, c, h, w = frames.shape
    if patch_size > h or patch_size > w:
        raise ValueError(f"patch_size={patch_size} is larger than the {h}x{w} frame")
    loc = locations.clamp(0.0, 1.0).to(frames.dtype)
    side = loc.new_full((n, 2), float(patch_size)) if sides is None else sides.to(frames.dtype)
    y0, x0 = loc[:, 0] * (h - side[:, 0]), loc[:, 1] * (w - side[:, 1])
    # align_corners=False: [-1, 1] spans the frame's outer pixel edges, so the window [x0, x0 + w')
    # is a scale w'/W and a shift to its centre; output pixel j then samples x0 + (j + 1/2) w'/P - 1/2
    zero = torch.zeros_like(y0)
    theta = torch.stack(
        [
            torch.stack([side[:, 1] / w, zero, (2 * x0 + side[:, 1]) / w - 1], -1),
            torch.stack([zero, side[:, 0] / h, (2 * y0 + side[:, 0]) / h - 1], -1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, c, patch_size, patch_size], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
