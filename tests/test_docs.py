"""The documentation's code cannot go stale: every Python block of README.md and docs/*.md runs,
and every ``adafocus ...`` line of their shell blocks names a real command with options it takes."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from adafocus.cli import build_parser
from adafocus.cli.lightning import COMMANDS as LIGHTNING
from adafocus.cli.predict import is_lightning_predict
from adafocus.resources import config_path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(lang: str) -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) == lang:
                found.append((page.name, text[: m.start()].count("\n") + 1, m.group(2)))
    return found


@pytest.mark.parametrize(("page", "line", "code"), blocks("python"), ids=lambda v: str(v)[:20])
def test_python_block_runs(page, line, code, tmp_path):
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{page}:{line}\n{run.stderr[-2000:]}"


def _command_lines() -> list[tuple[str, int, list[str]]]:
    lines = []
    for page, start, code in blocks("bash"):
        for i, raw in enumerate(code.replace("\\\n", " ").splitlines()):  # continued lines joined
            words = shlex.split(raw, comments=True)
            for j, w in enumerate(words):  # the command ends at a redirection or a pipe
                if w in (">", ">>", "<", "|", "&&", ";"):
                    words = words[:j]
                    break
            if words[:1] == ["adafocus"] and "..." not in raw:
                lines.append((page, start + 1 + i, words[1:]))
    return lines


@pytest.mark.parametrize(("page", "line", "argv"), _command_lines(), ids=lambda v: str(v)[:30])
def test_shell_command_parses(page, line, argv):
    where = f"{page}:{line}: adafocus {' '.join(argv)}"
    if argv[0] in LIGHTNING and (argv[0] != "predict" or is_lightning_predict(argv[1:])):
        config = argv[argv.index("--config") + 1]
        assert (config_path(config) if config.startswith("adafocus:") else ROOT / config).is_file(), where
        return
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: exit {e.code}")
