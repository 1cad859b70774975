"""Where frames come from: video files decoded with PyAV, or folders of extracted JPEG frames.

Both sources share one small interface: ``source.open(path, num_frames_hint)`` returns a clip
with ``num_frames`` and ``read(indices) -> uint8 tensor (len(indices), 3, H, W)``; indices are
0-based. Clips are opened inside ``Dataset.__getitem__`` (never in ``__init__``) so that no
FFmpeg handle is shared across DataLoader worker processes.

Video clips also give each frame's presentation time (``timestamps``, seconds from the first frame)
and the ``duration``, for time-based sampling of variable-frame-rate videos
(:func:`~adafocus.data.sampling.clip_indices`). Frame folders have no timestamps: their frames
are taken as evenly spaced, so time-based sampling is index sampling there.

Rotation: phone videos store landscape pixels plus a display matrix (the ``rotate`` tag of older
FFmpeg) saying how to turn them for display. ``VideoSource(rotation="auto")`` (the default) turns
the decoded frames upright with ``torch.rot90`` (multiples of 90 degrees; mirroring in the matrix
is ignored), so a portrait video gives portrait ``(3, H, W)`` frames as a player shows them;
``rotation="ignore"`` returns the stored pixels.

Files that are no video are refused with one line naming them: no video stream, or a still image
(JPEG, PNG, ...) whatever its file name says ("not a video (JPEG image)"); a 1-frame MP4 is a video.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from typing import Literal, Protocol

import av
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from .annotations import path_problem
from .errors import DataError

SourceName = Literal["video", "frames"]
Rotation = Literal["auto", "ignore"]
ROTATIONS: tuple[str, ...] = ("auto", "ignore")
# FFmpeg's demuxers of still images: one picture per file (``image2`` also reads numbered sequences)
_IMAGE_CODECS = {"mjpeg": "JPEG", "png": "PNG", "apng": "PNG", "webp": "WebP", "bmp": "BMP", "tiff": "TIFF",
                 "gif": "GIF", "jpegxl": "JPEG XL", "jpeg2000": "JPEG 2000", "qoi": "QOI"}  # fmt: skip


class Clip(Protocol):
    num_frames: int

    def read(self, indices: Sequence[int]) -> torch.Tensor: ...

    def close(self) -> None: ...


class Source(Protocol):
    def open(self, path: str, num_frames_hint: int | None = None) -> Clip: ...


def _check_file(path: str) -> None:
    problem = path_problem(path)  # tells a symlink loop or a dangling link from a missing file
    if problem is not None:
        raise DataError(problem, path=path)
    if os.path.isdir(path):
        raise DataError("is a folder, expected a video file (use source='frames' for frame folders)", path=path)
    if os.path.getsize(path) == 0:
        raise DataError("empty file (0 bytes)", path=path)


class VideoClip:
    """One opened video. The packet index (presentation timestamps and keyframes) comes from a
    demux pass, which reads the file but decodes nothing; it gives the exact frame count (WebM
    streams report 0 frames) and lets ``read`` seek only where a keyframe lies ahead of the
    decoder, so short-GOP videos seek per segment and long-GOP videos are decoded through.

    ``rotation="auto"`` turns frames upright by their display matrix (see the module docstring)."""

    def __init__(self, path: str, threads: int = 1, rotation: Rotation = "auto") -> None:
        _check_file(path)
        self.path, self.rotation = path, rotation
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise DataError(f"not a readable video ({e.__class__.__name__}: {e})", path=path) from None
        try:
            if not self._container.streams.video:
                raise DataError("contains no video stream", path=path)
            self._stream = self._container.streams.video[0]
            self._stream.thread_count = max(1, threads)
            pts, keys = [], []
            end_pts, end_duration = None, 0  # the last frame in display order, and how long it lasts
            for packet in self._container.demux(self._stream):
                if packet.pts is None or packet.size == 0:
                    continue
                pts.append(packet.pts)
                if end_pts is None or packet.pts > end_pts:
                    end_pts, end_duration = packet.pts, packet.duration or 0
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.error.FFmpegError as e:
            self.close()
            raise DataError(f"cannot demux ({e})", path=path) from None
        except DataError:
            self.close()
            raise
        if not pts:
            self.close()
            raise DataError("video stream has no frames", path=path)
        declared = self._stream.frames  # from the container header (0 when unknown, e.g. WebM)
        if declared and len(pts) < declared:
            self.close()
            # a header written up front (MP4 faststart) survives truncation: compare it with the data
            raise DataError(f"truncated: header declares {declared} frames, only {len(pts)} present", path=path)
        fmt = self._container.format.name
        if len(pts) == 1 and (fmt == "image2" or fmt.endswith("_pipe") or fmt in ("gif", "apng")):
            # FFmpeg opens a still image as a 1-frame "video": refuse it rather than train on a picture
            codec = self._stream.codec_context.name
            kind = _IMAGE_CODECS.get(codec, codec.upper())
            self.close()
            raise DataError(f"not a video ({kind} image)", path=path)
        self._pts = sorted(pts)
        self._keys = sorted(keys) or self._pts[:1]
        self.num_frames = len(self._pts)
        self._last_duration = end_duration
        tag = self._stream.metadata.get("rotate")  # older FFmpeg: clockwise degrees; the matrix is counter-clockwise
        try:
            self._tag_rotation = -int(float(tag)) if tag else 0
        except ValueError:
            self._tag_rotation = 0

    @property
    def timestamps(self) -> list[float]:
        """Each frame's presentation time in seconds from the first frame, in display order."""
        tb = float(self._stream.time_base or 0)
        return [(p - self._pts[0]) * tb for p in self._pts]

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end (the last frame lasts its
        packet's duration, else the median frame interval)."""
        tb = float(self._stream.time_base or 0)
        last = self._last_duration
        if last <= 0 and self.num_frames > 1:
            last = float(np.median(np.diff(self._pts)))
        return (self._pts[-1] - self._pts[0] + last) * tb

    @property
    def fps(self) -> float | None:
        """Frames per second: the stream's average rate, else measured from the timestamps (``None``
        for a one-frame video without a rate); ``adafocus data check --expected-fps`` compares it."""
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            return float(rate)
        span = (self._pts[-1] - self._pts[0]) * float(self._stream.time_base or 0)
        return (self.num_frames - 1) / span if span > 0 else None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        for i in indices:
            if not 0 <= i < self.num_frames:
                raise DataError(f"frame index {i} out of range (video has {self.num_frames} frames)", path=self.path)
        wanted = {self._pts[i] for i in indices}
        got: dict[int, np.ndarray] = {}
        turns: dict[int, int] = {}  # pts -> quarter turns counter-clockwise to display the frame upright
        pos: int | None = None  # pts of the last decoded frame
        frames = None
        try:
            for target in sorted(wanted):
                if target in got:
                    continue
                key = self._keys[max(0, bisect.bisect_right(self._keys, target) - 1)]
                if frames is None or pos is None or key > pos:
                    # a keyframe lies between the decoder and the target: jumping there skips work
                    self._container.seek(key, stream=self._stream, backward=True, any_frame=False)
                    frames = self._container.decode(self._stream)
                for frame in frames:
                    if frame.pts is None:
                        continue
                    pos = frame.pts
                    if pos in wanted and pos not in got:
                        # RGB conversion only for kept frames: it costs as much as decoding
                        got[pos] = frame.to_ndarray(format="rgb24")
                        turns[pos] = self._quarter_turns(frame)
                    if pos >= target:
                        break
                if target not in got:
                    raise DataError(
                        f"decoding ended before frame {self._pts.index(target)} of {self.num_frames} "
                        "(truncated or corrupt file?)",
                        path=self.path,
                    )
        except av.error.FFmpegError as e:
            raise DataError(f"decoding failed ({e})", path=self.path) from None
        arr = np.stack([got[self._pts[i]] for i in indices])
        out = torch.from_numpy(arr).permute(0, 3, 1, 2)
        ks = {turns[self._pts[i]] for i in indices}
        if len(ks) > 1:
            raise DataError(f"frames have different display rotations ({sorted(90 * k for k in ks)} degrees)",
                            path=self.path)  # fmt: skip
        k = ks.pop()
        # (H, W) -> (W, H) for quarter turns; rot90 from the row axis to the column axis is counter-clockwise
        return torch.rot90(out, k, dims=(-2, -1)).contiguous() if k else out

    def _quarter_turns(self, frame: av.VideoFrame) -> int:
        """Counter-clockwise quarter turns that display ``frame`` upright (0 with ``rotation="ignore"``):
        its display matrix (``VideoFrame.rotation``, PyAV >= 13), else the stream's ``rotate`` tag."""
        if self.rotation == "ignore":
            return 0
        degrees = getattr(frame, "rotation", 0) or self._tag_rotation
        return round(degrees / 90) % 4

    def close(self) -> None:
        self._container.close()


class VideoSource:
    """Video files decoded with PyAV; ``threads`` FFmpeg decoding threads per clip (1 per worker);
    ``rotation``: ``"auto"`` turns frames upright by the video's display matrix, ``"ignore"`` keeps
    the stored pixels."""

    def __init__(self, threads: int = 1, rotation: Rotation = "auto") -> None:
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        self.threads, self.rotation = threads, rotation

    def open(self, path: str, num_frames_hint: int | None = None) -> VideoClip:
        return VideoClip(path, self.threads, self.rotation)


class FrameFolderClip:
    """A folder of JPEG frames named by ``template`` and numbered from 1 (the TSN convention)."""

    def __init__(self, path: str, template: str, num_frames_hint: int | None = None) -> None:
        if not os.path.isdir(path):
            raise DataError(path_problem(path, "frame folder not found") or "not a folder", path=path)
        self.path, self.template = path, template
        if num_frames_hint and num_frames_hint > 0:
            self.num_frames = num_frames_hint
        else:
            self.num_frames = sum(1 for name in os.listdir(path) if not name.startswith("."))
        if self.num_frames == 0:
            raise DataError("frame folder is empty", path=path)

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, self.template.format(index + 1))

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        out = []
        for i in indices:
            file = self.frame_path(i)
            try:
                img = decode_image(file, mode=ImageReadMode.RGB)
            except (RuntimeError, OSError, ValueError) as e:
                why = "missing" if not os.path.exists(file) else f"unreadable ({e})"
                raise DataError(f"frame {i + 1} {why}: {file}", path=self.path) from None
            out.append(img)
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) > 1:
            raise DataError(f"frames have different sizes {sorted(shapes)}", path=self.path)
        return torch.stack(out)

    def close(self) -> None:
        pass


class FrameFolderSource:
    def __init__(self, template: str = "img_{:05d}.jpg") -> None:
        try:
            template.format(1)
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"frame_template={template!r} must format one integer, e.g. 'img_{{:05d}}.jpg'") from e
        self.template = template

    def open(self, path: str, num_frames_hint: int | None = None) -> FrameFolderClip:
        return FrameFolderClip(path, self.template, num_frames_hint)


def make_source(
    name: str, *, frame_template: str = "img_{:05d}.jpg", threads: int = 1, rotation: Rotation = "auto"
) -> Source:
    """The source called ``name`` (``"video"`` or ``"frames"``); ``rotation`` applies to videos."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    if name == "video":
        return VideoSource(threads, rotation)
    if name == "frames":
        return FrameFolderSource(frame_template)
    raise ValueError(f"source must be 'video' or 'frames', got {name!r}")
