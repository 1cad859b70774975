"""The configs installed with the package (``adafocus.lightning_configs``, the same files as the
checkout's top-level ``lightning_configs/``), found through :mod:`importlib.resources`.

On the command line a packaged config is named ``adafocus:<path>``, e.g.
``adafocus fit --config adafocus:toy/stage1.yaml``, which works from any folder and any install.
"""

from __future__ import annotations

import importlib.resources
import re
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


# the per-patch-size configs of earlier versions: one config per dataset now, the size an override
_FOLDED = re.compile(r"(?P<dir>\w+)/(?P<arch>adafocus_mn2_rn50|adafocus_tsm)_p(?P<p>\d+)\.yaml$")


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config adafocus:X`` / ``-c adafocus:X`` / ``--config=adafocus:X`` made a
    file path; a config file of earlier versions that was folded into its dataset's one is named."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        after_flag = i > 0 and argv[i - 1] in ("--config", "-c")
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else arg if after_flag else None
        if value is not None:
            _check_folded(value)
            if value.startswith(PREFIX):
                arg = ("--config=" if arg.startswith("--config=") else "") + str(config_path(value))
        out.append(arg)
    return out


def _check_folded(value: str) -> None:
    m = _FOLDED.search(value.replace("\\", "/"))
    if m and not Path(value).is_file():
        raise FileNotFoundError(
            f"{value}: the per-patch-size configs were folded into one per dataset; use "
            f"--config {PREFIX}{m['dir']}/{m['arch']}.yaml --model.init_args.net.init_args.patch_size={m['p']}"
        )
