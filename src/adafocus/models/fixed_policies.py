"""Fixed patch-selection policies used as baselines and ablations (paper Table 5).

Each returns normalised ``(B, T, 2)`` locations (see :mod:`adafocus.crop`).
"""

from __future__ import annotations

import torch

FIXED_POLICIES = ("random", "centre", "gaussian")


def random_locations(b: int, t: int, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform over every possible patch position (stage I warm-up, Eq. 7's baseline)."""
    return torch.rand(b, t, 2, device=device, generator=generator)


def centre_locations(b: int, t: int, *, device=None) -> torch.Tensor:
    """The patch centred in the frame."""
    return torch.full((b, t, 2), 0.5, device=device)


def gaussian_locations(
    b: int, t: int, *, sigma: float = 0.25, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Normal around the centre; ``sigma`` in units of the patch's movable range, clipped to it."""
    noise = torch.randn(b, t, 2, device=device, generator=generator)
    return (0.5 + sigma * noise).clamp(0.0, 1.0)


def fixed_locations(name: str, b: int, t: int, *, device=None, generator=None, sigma: float = 0.25) -> torch.Tensor:
    """Dispatch by policy name (one of :data:`FIXED_POLICIES`)."""
    if name == "random":
        return random_locations(b, t, device=device, generator=generator)
    if name in ("centre", "center"):
        return centre_locations(b, t, device=device)
    if name == "gaussian":
        return gaussian_locations(b, t, sigma=sigma, device=device, generator=generator)
    raise ValueError(f"policy={name!r} is not a fixed policy; choose from {FIXED_POLICIES} or 'learned'")
