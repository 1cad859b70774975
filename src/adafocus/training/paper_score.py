"""The paper's score beside the measured one after ``adafocus validate`` / ``adafocus test``.

A run is matched to a registry entry (:mod:`adafocus.registry`) by its config file and its net:
the file must be the entry's ``config`` (a packaged ``adafocus:dir/name.yaml`` is recognised by its
last two path parts, so an edited copy kept as ``.../activitynet/adafocus_mn2_rn50.yaml`` still
counts), the net must be of the entry's model class, and every argument of the entry's
``model_kwargs`` must equal the net's (the patch size picks ``..._p96`` vs ``..._p128``).
Entries without a paper score, and runs of other configs, print nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..registry import ModelEntry
from ..resources import PREFIX


def _names_file(entry_config: str, file: Path) -> bool:
    """Whether ``file`` is the config ``entry_config`` names (``adafocus:dir/name.yaml`` or a path)."""
    if entry_config.startswith(PREFIX):
        rel = Path(entry_config.removeprefix(PREFIX)).parts
        return file.parts[-len(rel) :] == rel
    try:
        return os.path.samefile(entry_config, file)
    except OSError:
        return False


def _same_net(entry: ModelEntry, net: nn.Module) -> bool:
    config = getattr(net, "config", None)
    if type(net).__name__ != entry.model_class or not isinstance(config, Mapping):
        return False
    return all(k in config and config[k] == v for k, v in entry.model_kwargs.items())


def find_entry(
    config_files: Sequence[str | os.PathLike], net: nn.Module, entries: Iterable[ModelEntry] | None = None
) -> ModelEntry | None:
    """The first entry with a paper score whose config is one of ``config_files`` and whose
    architecture is ``net``'s (``entries``: default, the whole registry)."""
    if entries is None:
        from ..registry import REGISTRY

        entries = REGISTRY.values()
    files = [Path(os.path.abspath(f)) for f in config_files]
    for e in entries:
        if e.config and e.paper_score is not None and e.metric and any(_names_file(e.config, f) for f in files):
            if _same_net(e, net):
                return e
    return None


def paper_score_line(entry: ModelEntry, metrics: Mapping[str, Any], stage: str) -> str:
    """``paper (Table 1, NAME): mAP 75.0 | measured: mAP 74.3 (val/mAP)``; ``metrics`` hold fractions
    (Lightning's logged values), the paper's score is in percent."""
    key = f"{stage}/{entry.metric}"
    head = f"paper ({entry.paper_ref}, {entry.name}): {entry.metric} {entry.paper_score:.1f}"
    value = metrics.get(key)
    if value is None:
        why = " (a multi-label set: model.init_args.multi_label true?)" if entry.metric == "mAP" else ""
        return f"{head} | measured: {key} was not logged{why}"
    return f"{head} | measured: {entry.metric} {100 * float(value):.1f} ({key})"


def config_files_of(config: Mapping[str, Any]) -> list[str]:
    """The ``--config`` files of a parsed LightningCLI subcommand config (jsonargparse ``Path`` objects)."""
    out = []
    for c in config.get("config") or []:
        path = getattr(c, "absolute", None) or getattr(c, "relative", None) or c
        out.append(os.fspath(path) if isinstance(path, os.PathLike) else str(path))
    return out
