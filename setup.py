"""Packaging beside pyproject.toml for one thing it cannot say: the top-level ``lightning_configs/``
folder (the user-facing copy) is installed as the package ``adafocus.lightning_configs``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "adafocus.lightning_configs"],
    package_dir={"": "src", "adafocus.lightning_configs": "lightning_configs"},
    package_data={"adafocus": ["py.typed"], "adafocus.lightning_configs": ["**/*.yaml"]},
)
