"""TSN segment sampling (Wang et al., ECCV 2016), as used by TSN/TSM/AR-Net/AdaFocus.

The video's ``N`` frames are split into ``T`` equal segments. Training takes one uniformly random
frame per segment; evaluation takes each segment's centre frame (multi-clip testing,
:func:`tsn_test_indices`, adds clips shifted within the segments). Indices are 0-based.

That is sampling by frame index (``sampling="index"``, the papers' protocol). On a variable-frame-
rate video (phones record slow scenes at fewer frames per second) equal index segments are unequal
in time; ``sampling="time"`` (:func:`tsn_time_indices`) splits the duration into equal spans of
time instead and takes the frame whose presentation time is nearest a random (training) or the
centre (evaluation) time of each span. :func:`clip_indices` picks by a clip's ``timestamps``;
clips without them (frame folders, evenly spaced by construction) are sampled by index.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, Literal

import torch

ShortVideos = Literal["spread", "last", "first"]
SHORT_VIDEOS: tuple[str, ...] = ("spread", "last", "first")
Sampling = Literal["index", "time"]
SAMPLINGS: tuple[str, ...] = ("index", "time")


def tsn_indices(
    num_frames: int,
    num_segments: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    short_videos: ShortVideos = "spread",
) -> list[int]:
    """``num_segments`` frame indices into a video of ``num_frames`` frames.

    Train (``N >= T``): segment ``k`` covers ``[k*d, (k+1)*d)`` with ``d = N // T`` (the official
    code's integer segment length, so the last ``N mod T`` frames are never drawn); the frame is
    ``k*d + randint(d)`` drawn from ``generator`` (torch's global RNG when ``None``, which
    Lightning seeds per worker). Eval (``N >= T``): ``int(N/T * (k + 0.5))``.

    Videos shorter than ``T`` (both modes), by ``short_videos``:

    * ``"spread"`` (default): frames repeated evenly, ``floor(k * N / T)``, so every frame is used
      and the clip stays in temporal order, each frame about ``T / N`` times.
    * ``"last"``: every frame once, then the last one repeated, ``0, 1, ..., N-1, N-1, ...`` (the
      official V1 / V2 code for ActivityNet, FCVID and Mini-Kinetics, ``ops/dataset.py``, in
      training and evaluation).
    * ``"first"``: frame 0 ``T`` times (the official Something-Something code, ``ops/dataset.py``,
      which throws the video away; its evaluation does so for ``N == T`` too, not reproduced here).
    """
    if num_segments <= 0:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if short_videos not in SHORT_VIDEOS:
        raise ValueError(f"short_videos must be one of {SHORT_VIDEOS}, got {short_videos!r}")
    if num_frames < num_segments:
        if short_videos == "last":
            return list(range(num_frames)) + [num_frames - 1] * (num_segments - num_frames)
        if short_videos == "first":
            return [0] * num_segments
        return [k * num_frames // num_segments for k in range(num_segments)]
    if not train:
        tick = num_frames / num_segments
        return [int(tick * (k + 0.5)) for k in range(num_segments)]
    d = num_frames // num_segments
    offsets = torch.randint(d, (num_segments,), generator=generator)
    return [k * d + int(o) for k, o in enumerate(offsets)]


def tsn_test_indices(
    num_frames: int, num_segments: int, num_clips: int = 1, *, short_videos: ShortVideos = "spread"
) -> list[list[int]]:
    """Frame indices of ``num_clips`` evaluation clips of ``num_segments`` frames each (multi-clip testing).

    Clip ``j`` takes, in each segment ``k``, the frame at the fraction ``s_j = (1/2 + j/N) mod 1`` of
    the segment: ``int(num_frames/T * (k + s_j))``. Clip 0 is the single-clip evaluation clip
    (:func:`tsn_indices` with ``train=False``, segment centres); ``num_clips=2`` is TSM's
    ``--twice_sample`` (its ``_get_test_indices``: the segment centres, then the segment starts);
    larger ``N`` spreads the clips evenly over each segment. Every clip is in temporal order and in
    ``[0, num_frames)``.

    Videos shorter than ``T`` (``short_videos`` as in :func:`tsn_indices`): with ``"spread"`` clip
    ``j`` repeats frames evenly from a shifted start, ``floor((k + j/N) * num_frames / T)`` (clip 0
    as in :func:`tsn_indices`); ``"last"`` and ``"first"`` have nothing to shift, so every clip is
    clip 0.
    """
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be an integer >= 1, got {num_clips!r}")
    # validates num_frames, num_segments and short_videos
    first = tsn_indices(num_frames, num_segments, train=False, short_videos=short_videos)
    if num_clips == 1:
        return [first]
    n, t = num_frames, num_segments
    if n < t and short_videos != "spread":
        return [list(first) for _ in range(num_clips)]
    if n < t:  # integer arithmetic: exact floors, clip 0 identical to tsn_indices
        return [[(k * num_clips + j) * n // (t * num_clips) for k in range(t)] for j in range(num_clips)]
    tick = n / t
    # s_j = ((N + 2j) mod 2N) / 2N is exact in floating point for j = 0 (1/2), so clip 0 is bit-identical
    shifts = [((num_clips + 2 * j) % (2 * num_clips)) / (2 * num_clips) for j in range(num_clips)]
    return [[int(tick * (k + s)) for k in range(t)] for s in shifts]


def nearest_frames(timestamps: Sequence[float], times: Sequence[float]) -> list[int]:
    """For each of ``times``, the index of the frame whose timestamp (sorted, seconds) is nearest
    (the earlier frame on a tie)."""
    out = []
    for t in times:
        i = bisect.bisect_left(timestamps, t)
        if i == len(timestamps) or (i > 0 and t - timestamps[i - 1] <= timestamps[i] - t):
            i -= 1
        out.append(i)
    return out


def _time_args(timestamps: Sequence[float], duration: float, num_segments: int) -> None:
    if num_segments <= 0:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if not timestamps:
        raise ValueError("timestamps must not be empty")
    if any(b < a for a, b in zip(timestamps, timestamps[1:], strict=False)):
        raise ValueError("timestamps must be sorted (display order)")
    if not duration >= 0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration}")


def tsn_time_indices(
    timestamps: Sequence[float],
    duration: float,
    num_segments: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    short_videos: ShortVideos = "spread",
) -> list[int]:
    """TSN segments in time: ``[0, duration)`` split into ``num_segments`` equal spans; segment ``k``
    takes the frame (of ``timestamps``, seconds from the first frame, sorted) nearest the time
    ``duration / T * (k + u)``, ``u`` uniform in ``[0, 1)`` from ``generator`` in training (torch's
    global RNG when ``None``), ``1/2`` in evaluation. A frame is drawn in proportion to how long it
    is shown, not to how many frames surround it.

    On a constant-rate video this is index sampling up to rounding (nearest instead of the floor).
    Videos with fewer frames than ``T`` (or no duration) are sampled by index, by ``short_videos``
    (:func:`tsn_indices`).
    """
    _time_args(timestamps, duration, num_segments)
    n = len(timestamps)
    if n < num_segments or duration <= 0:
        return tsn_indices(n, num_segments, train=train, generator=generator, short_videos=short_videos)
    if train:
        u = torch.rand(num_segments, generator=generator, dtype=torch.float64).tolist()
    else:
        u = [0.5] * num_segments
    tick = duration / num_segments
    return nearest_frames(timestamps, [tick * (k + f) for k, f in enumerate(u)])


def tsn_time_test_indices(
    timestamps: Sequence[float],
    duration: float,
    num_segments: int,
    num_clips: int = 1,
    *,
    short_videos: ShortVideos = "spread",
) -> list[list[int]]:
    """:func:`tsn_test_indices` in time: clip ``j`` takes, in each time segment, the frame nearest the
    fraction ``s_j = (1/2 + j/N) mod 1`` of it (clip 0: the segment centres, as
    :func:`tsn_time_indices` in evaluation). Fewer frames than ``T``: :func:`tsn_test_indices`."""
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be an integer >= 1, got {num_clips!r}")
    _time_args(timestamps, duration, num_segments)
    n = len(timestamps)
    if n < num_segments or duration <= 0:
        return tsn_test_indices(n, num_segments, num_clips, short_videos=short_videos)
    tick = duration / num_segments
    shifts = [((num_clips + 2 * j) % (2 * num_clips)) / (2 * num_clips) for j in range(num_clips)]
    return [nearest_frames(timestamps, [tick * (k + s) for k in range(num_segments)]) for s in shifts]


def _timed(clip: Any, sampling: str) -> tuple[list[float], float] | None:
    """The clip's ``(timestamps, duration)`` when sampling by time and it has them, else ``None``."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if sampling == "index" or getattr(clip, "timestamps", None) is None:
        return None
    return list(clip.timestamps), float(clip.duration)


def clip_indices(
    clip: Any,
    num_segments: int,
    *,
    train: bool,
    sampling: Sampling = "index",
    short_videos: ShortVideos = "spread",
    generator: torch.Generator | None = None,
) -> list[int]:
    """The ``num_segments`` frame indices of an opened clip (``num_frames``; ``timestamps`` and
    ``duration`` for ``sampling="time"``, else it is sampled by index): :func:`tsn_indices` or
    :func:`tsn_time_indices`."""
    timed = _timed(clip, sampling)
    if timed is None:
        return tsn_indices(clip.num_frames, num_segments, train=train, generator=generator, short_videos=short_videos)
    return tsn_time_indices(*timed, num_segments, train=train, generator=generator, short_videos=short_videos)


def clip_test_indices(
    clip: Any,
    num_segments: int,
    num_clips: int = 1,
    *,
    sampling: Sampling = "index",
    short_videos: ShortVideos = "spread",
) -> list[list[int]]:
    """The evaluation clips of an opened clip: :func:`tsn_test_indices` or :func:`tsn_time_test_indices`."""
    timed = _timed(clip, sampling)
    if timed is None:
        return tsn_test_indices(clip.num_frames, num_segments, num_clips, short_videos=short_videos)
    return tsn_time_test_indices(*timed, num_segments, num_clips, short_videos=short_videos)
