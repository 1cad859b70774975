"""TSN segment sampling (Wang et al., ECCV 2016), as used by TSN/TSM/AR-Net/AdaFocus.

The video's ``N`` frames are split into ``T`` equal segments. Training takes one uniformly random
frame per segment; evaluation takes each segment's centre frame. Indices are 0-based.
"""

from __future__ import annotations

import torch


def tsn_indices(
    num_frames: int, num_segments: int, *, train: bool, generator: torch.Generator | None = None
) -> list[int]:
    """``num_segments`` frame indices into a video of ``num_frames`` frames.

    Train (``N >= T``): segment ``k`` covers ``[k*d, (k+1)*d)`` with ``d = N // T`` (the official
    code's integer segment length, so the last ``N mod T`` frames are never drawn); the frame is
    ``k*d + randint(d)`` drawn from ``generator`` (torch's global RNG when ``None``, which
    Lightning seeds per worker). Eval (``N >= T``): ``int(N/T * (k + 0.5))``.

    Videos shorter than ``T`` (both modes): frames are repeated evenly, ``floor(k * N / T)``, so
    every frame is used and the clip stays in temporal order (the official code returns frame 0
    ``T`` times, which throws the video away).
    """
    if num_segments <= 0:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if num_frames < num_segments:
        return [k * num_frames // num_segments for k in range(num_segments)]
    if not train:
        tick = num_frames / num_segments
        return [int(tick * (k + 0.5)) for k in range(num_segments)]
    d = num_frames // num_segments
    offsets = torch.randint(d, (num_segments,), generator=generator)
    return [k * d + int(o) for k, o in enumerate(offsets)]
