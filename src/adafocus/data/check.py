"""``adafocus data check``: validate an annotation list without training anything.

Every problem is reported with its list line: malformed lines, labels out of range, missing or
empty files, unreadable or truncated videos (the frames a clip would use, and the last frame,
are decoded), frame counts that disagree with the list, videos shorter than T.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .annotations import read_list, resolve
from .errors import DataError
from .sampling import tsn_indices
from .sources import make_source


@dataclass
class CheckReport:
    list_file: str
    num_samples: int = 0
    errors: list[DataError] = field(default_factory=list)
    warnings: list[DataError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"error: {e}" for e in sorted(self.errors, key=_order)]
        out += [f"warning: {w}" for w in sorted(self.warnings, key=_order)]
        out.append(
            f"{self.list_file}: {self.num_samples} samples, {len(self.errors)} errors, {len(self.warnings)} warnings"
        )
        return out


def _order(e: DataError) -> int:
    return e.line or 0


def check_list(
    list_file: str,
    *,
    root: str = "",
    source: str = "video",
    frame_template: str = "img_{:05d}.jpg",
    delimiter: str = " ",
    num_classes: int | None = None,
    num_frames: int = 16,
    decode: bool = True,
) -> CheckReport:
    """Check every line of ``list_file``; ``decode=False`` only opens the media (faster)."""
    report = CheckReport(list_file)
    try:
        samples = read_list(list_file, delimiter=delimiter, num_classes=num_classes, errors=report.errors)
    except DataError as e:
        if e not in report.errors:
            report.errors.append(e)
        return report
    report.num_samples = len(samples)
    src = make_source(source, frame_template=frame_template)
    for s in samples:
        path = resolve(root, s.path)
        where = dict(list_file=list_file, line=s.line)
        try:
            # frame folders: count the files, so a list that claims more frames than exist is caught
            clip = src.open(path, None)
            try:
                n = clip.num_frames
                if s.num_frames and s.num_frames != n:
                    msg = f"list says {s.num_frames} frames, found {n}"
                    if source == "frames" and s.num_frames > n:
                        report.errors.append(DataError(msg, path=path, **where))
                        continue
                    report.warnings.append(DataError(msg, path=path, **where))
                if n < num_frames:
                    report.warnings.append(
                        DataError(
                            f"only {n} frames, fewer than T={num_frames} (frames will repeat)", path=path, **where
                        )
                    )
                if decode:
                    clip.read(sorted(set(tsn_indices(n, num_frames, train=False)) | {n - 1}))
            finally:
                clip.close()
        except DataError as e:
            report.errors.append(e.located(**where))
        except (OSError, RuntimeError, ValueError) as e:
            report.errors.append(DataError(f"{e.__class__.__name__}: {e}", path=path, **where))
    return report
