"""Converters from the official annotation files to TSN-format lists (``path num_frames label...``).

* Kinetics CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``); the class index is a
  classes file (one name per line) given or written — convert train first, then reuse its classes
  for val; rows whose class is not in a given file are dropped (Mini-Kinetics' 200-class subset).
* Something-Something V1: ``something-something-v1-labels.csv`` (one class per line, index = line)
  and ``...-train.csv`` / ``...-validation.csv`` rows ``id;label``.
* Something-Something V2: ``something-something-v2-labels.json`` (``{"class": "index"}``) and
  ``...-train.json`` / ``...-validation.json`` (``[{"id", "template", ...}]``; the class is the
  template without brackets).
* Kinetics-400 (``convert_kinetics400``): the same CSV; media named
  ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` in one folder per split (the CVDF
  downloads' naming; ``template`` for class folders ``{label_}/...``); a class count other than
  400 is reported.
* Jester: ``jester-v1-labels.csv`` (one class per line) and ``jester-v1-train.csv`` /
  ``...-validation.csv`` rows ``id;label`` (frame folders named by id); the class index is the
  name's place in the sorted names, as in TSM's lists that the official checkpoints used.
* ActivityNet v1.3 JSON (``{"database": {id: {"subset", "annotations": [{"label"}]}}}``): up to
  ``max_labels`` distinct labels per video, padded with -1 (as AR-Net's lists), classes sorted.

``num_frames`` is counted from the media under ``root`` when given, else written as 0 ("unknown",
counted when the video is opened).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

from .annotations import format_line, resolve
from .errors import DataError
from .sources import make_source


@dataclass
class Conversion:
    """Rows ``(path, labels, source_line)``, the class names, and every row that was dropped."""

    rows: list[tuple[str, list[int], int]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_classes(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DataError("classes file is empty", list_file=path)
    return names


def convert_kinetics(
    csv_path: str,
    *,
    classes: list[str] | None = None,
    template: str = "{label_}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
) -> Conversion:
    """Kinetics CSV rows; ``template`` may use label, label_ (spaces as _), youtube_id, time_start,
    time_end, split."""
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or []):
            raise DataError(f"not a Kinetics CSV: header {reader.fieldnames} lacks {sorted(need)}", list_file=csv_path)
        records = [(n, r) for n, r in enumerate(reader, start=2)]
    conv = Conversion(classes=classes or sorted({r["label"] for _, r in records if r["label"]}))
    index = {c: i for i, c in enumerate(conv.classes)}
    for n, r in records:
        if r["label"] not in index:
            conv.problems.append(f"{csv_path}:{n}: class {r['label']!r} not in the class list; row dropped")
            continue
        try:
            fields = dict(
                r,
                label_=r["label"].replace(" ", "_"),
                time_start=int(float(r["time_start"])),
                time_end=int(float(r["time_end"])),
            )
        except ValueError:
            conv.problems.append(f"{csv_path}:{n}: time_start/time_end are not numbers; row dropped")
            continue
        conv.rows.append((template.format(**fields), [index[r["label"]]], n))
    return conv


K400_TEMPLATE = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


def convert_kinetics400(
    csv_path: str, *, classes: list[str] | None = None, template: str = K400_TEMPLATE
) -> Conversion:
    """Kinetics-400 CSV rows (``label,youtube_id,time_start,time_end,split[,is_cc]``), media named as
    the CVDF downloads name them (``K400_TEMPLATE``, one folder per split: give it as ``root``);
    ``template`` takes the fields of :func:`convert_kinetics` (``{label_}/...`` for class folders).
    Classes are the sorted names (the order of TSM's ``kinetics_label_map.txt``) unless given."""
    conv = convert_kinetics(csv_path, classes=classes, template=template)
    if len(conv.classes) != 400:
        conv.problems.append(
            f"{csv_path}: {len(conv.classes)} classes, Kinetics-400 has 400 (a partial CSV, or Kinetics-600/700?)"
        )
    return conv


def _id_label_csv(csv_path: str, classes: list[str], template: str) -> Conversion:
    """Rows ``id;label`` (Something-Something V1, Jester) with class index = place in ``classes``."""
    conv = Conversion(classes=classes)
    index = {c: i for i, c in enumerate(conv.classes)}
    with open(csv_path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            vid, _, label = line.strip().partition(";")
            if label not in index:
                conv.problems.append(f"{csv_path}:{n}: unknown or missing class {label!r}; row dropped")
                continue
            conv.rows.append((template.format(id=vid), [index[label]], n))
    return conv


def convert_ssv1(csv_path: str, labels_csv: str, *, template: str = "{id}") -> Conversion:
    """Something-Something V1 rows ``id;label`` (videos are frame folders named by id)."""
    return _id_label_csv(csv_path, _read_classes(labels_csv), template)


def convert_jester(csv_path: str, labels_csv: str, *, template: str = "{id}", sort_classes: bool = True) -> Conversion:
    """Jester ``jester-v1-{train,validation}.csv`` rows ``id;label`` with ``jester-v1-labels.csv``;
    videos are frame folders named by id (frames ``{:05d}.jpg``). The class index is the name's place
    in the sorted labels (TSM's list generator sorts them; the official Jester checkpoints were
    trained on its lists); ``sort_classes=False`` keeps the labels file's order. Rows without a
    label (the test CSV holds ids only) are dropped into ``problems``."""
    names = _read_classes(labels_csv)
    return _id_label_csv(csv_path, sorted(names) if sort_classes else names, template)


def convert_ssv2(json_path: str, labels_json: str, *, template: str = "{id}.webm") -> Conversion:
    """Something-Something V2 entries; the class is the template with ``[`` ``]`` removed."""
    with open(labels_json, encoding="utf-8") as f:
        label_map = {k: int(v) for k, v in json.load(f).items()}
    conv = Conversion(classes=[k for k, _ in sorted(label_map.items(), key=lambda kv: kv[1])])
    with open(json_path, encoding="utf-8") as f:
        entries = json.load(f)
    for n, e in enumerate(entries, start=1):
        name = str(e.get("template", "")).replace("[", "").replace("]", "")
        if name not in label_map:
            conv.problems.append(f"{json_path}: entry {n} (id {e.get('id')}): unknown or missing class {name!r}")
            continue
        conv.rows.append((template.format(id=e["id"]), [label_map[name]], n))
    return conv


def convert_activitynet(
    json_path: str,
    *,
    subset: str = "training",
    classes: list[str] | None = None,
    template: str = "v_{id}.mp4",
    max_labels: int = 3,
) -> Conversion:
    """ActivityNet v1.3 videos of ``subset`` (training / validation) with their distinct labels."""
    with open(json_path, encoding="utf-8") as f:
        db = json.load(f).get("database")
    if not isinstance(db, dict):
        raise DataError("not an ActivityNet JSON: no 'database' object", list_file=json_path)
    conv = Conversion(classes=classes or sorted({a["label"] for v in db.values() for a in v.get("annotations", [])}))
    index = {c: i for i, c in enumerate(conv.classes)}
    for n, (vid, v) in enumerate(db.items(), start=1):
        if v.get("subset") != subset:
            continue
        labels = list(dict.fromkeys(index[a["label"]] for a in v.get("annotations", []) if a["label"] in index))
        if not labels:
            conv.problems.append(f"{json_path}: video {vid}: no annotated class; dropped")
            continue
        if len(labels) > max_labels:
            conv.problems.append(f"{json_path}: video {vid}: {len(labels)} labels, kept the first {max_labels}")
        conv.rows.append((template.format(id=vid), labels[:max_labels], n))
    return conv


def write_list(
    conv: Conversion,
    out: str,
    *,
    root: str | None = None,
    source: str = "video",
    frame_template: str = "img_{:05d}.jpg",
    delimiter: str = " ",
    pad_to: int = 0,
    classes_out: str | None = None,
) -> int:
    """Write ``conv`` as a TSN list (and the class names); returns the number of lines written.

    With ``root``, each video is opened to count its frames and missing/unreadable ones are
    dropped into ``conv.problems``."""
    src = make_source(source, frame_template=frame_template) if root else None
    lines = []
    for path, labels, n in conv.rows:
        num_frames = 0
        if src is not None:
            try:
                clip = src.open(resolve(root, path))
                num_frames = clip.num_frames
                clip.close()
            except DataError as e:
                conv.problems.append(f"row {n}: {e}; dropped")
                continue
        lines.append(format_line(path, labels, num_frames=num_frames, delimiter=delimiter, pad_to=pad_to))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    if classes_out:
        with open(classes_out, "w", encoding="utf-8") as f:
            f.write("".join(c + "\n" for c in conv.classes))
    return len(lines)
