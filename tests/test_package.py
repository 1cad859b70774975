"""The built wheel is a working package: configs and py.typed inside, no caps on torch, and
``adafocus zoo`` / ``adafocus demo --fast`` run from it in a fresh environment outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("src", "lightning_configs", "pyproject.toml", "setup.py", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the build leaves nothing in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        src, dst = ROOT / name, tmp / "src_copy" / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
           str(tmp / "src_copy")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (whl,) = (tmp / "dist").glob("adafocus-*.whl")
    return whl


def test_wheel_holds_the_configs_and_py_typed_and_caps_no_torch(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "lightning_configs").rglob("*.yaml"))
    assert len(configs) >= 13
    assert {f"adafocus/{c}" for c in configs} <= names
    assert {"adafocus/py.typed", "adafocus/cli/__init__.py", "adafocus/checkpoint.py"} <= names
    assert not any(n.startswith(("tests/", "lightning_configs/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    torch_reqs = [
        r for r in requires if r.split(">")[0].split("<")[0].split("=")[0].strip() in ("torch", "torchvision")
    ]
    assert len(torch_reqs) == 2 and not any("<" in r for r in torch_reqs), torch_reqs


def test_installed_wheel_runs_zoo_and_the_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    # the dependencies (torch & co., several GB) come from the test's own environment, after the package
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}
    where = subprocess.run([str(python), "-c", "import adafocus.resources as r; print(r.configs_dir())"], cwd=work,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(site) and (Path(where) / "demo" / "stage3.yaml").is_file()
    adafocus = [str(venv / ("Scripts/adafocus.exe" if os.name == "nt" else "bin/adafocus"))]  # the console script
    zoo = subprocess.run([*adafocus, "zoo", "--json"], cwd=work, env=env, check=True, capture_output=True, text=True)
    rows = json.loads(zoo.stdout)
    configs = [r["config"] for r in rows if r["config"]]
    assert len(configs) >= 13 and all(c.startswith("adafocus:") for c in configs)
    demo = subprocess.run([*adafocus, "demo", "--fast", "--no-progress", "--out", "demo"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    rows = json.loads((work / "demo" / "metrics.json").read_text())["rows"]
    assert {r["policy"] for r in rows} == {"learned", "random", "centre", "gaussian", "full frames"}
    assert (work / "demo" / "patches.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (work / "lightning_configs").exists()  # the configs came from the installed package
