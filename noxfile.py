"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s demo``, ``nox -s package``."""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# torch/torchvision pins that install from a local wheel cache on the project's build machines
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def _install(session: nox.Session) -> None:
    session.install(*TORCH, "-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "examples", "noxfile.py")


@nox.session
def demo(session: nox.Session) -> None:
    _install(session)
    session.run("adafocus", "demo", *session.posargs)


@nox.session
def package(session: nox.Session) -> None:
    """The wheel installed with its dependencies into a fresh venv, run from outside the checkout
    (the test suite does the same with the dependencies borrowed: tests/test_package.py)."""
    import glob

    dist = session.create_tmp()
    session.run("pip", "wheel", "--no-deps", "-w", dist, ".")
    (wheel,) = glob.glob(f"{dist}/adafocus-*.whl")
    session.install(*TORCH, wheel)
    session.chdir(dist)
    session.run("adafocus", "zoo")
    session.run("adafocus", "demo", "--fast", "--no-progress", "--out", "demo")
