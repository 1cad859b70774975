"""The configs installed with the package (``adafocus.lightning_configs``, the same files as the
checkout's top-level ``lightning_configs/``), found through :mod:`importlib.resources`.

On the command line a packaged config is named ``adafocus:<path>``, e.g.
``adafocus fit --config adafocus:toy/stage1.yaml``, which works from any folder and any install.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

PREFIX = "adafocus:"


def configs_dir() -> Path:
    """The folder of the installed configs."""
    return Path(str(importlib.resources.files("adafocus.lightning_configs")))


def list_configs() -> list[str]:
    """Every packaged config, as ``folder/name.yaml`` relative to :func:`configs_dir`."""
    root = configs_dir()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def config_path(name: str) -> Path:
    """The file of packaged config ``name`` (``"toy/stage1.yaml"``, with or without ``adafocus:``)."""
    rel = name.removeprefix(PREFIX)
    path = configs_dir() / rel
    if not path.is_file():
        raise FileNotFoundError(f"{PREFIX}{rel}: no such packaged config; available: {', '.join(list_configs())}")
    return path


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config adafocus:X`` / ``-c adafocus:X`` / ``--config=adafocus:X`` made a file path."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        after_flag = i > 0 and argv[i - 1] in ("--config", "-c")
        if after_flag and arg.startswith(PREFIX):
            arg = str(config_path(arg))
        elif arg.startswith("--config=" + PREFIX):
            arg = "--config=" + str(config_path(arg.split("=", 1)[1]))
        out.append(arg)
    return out
