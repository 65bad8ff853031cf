"""ops/Dockerfile installs the hub with ``pip install .``: everything the hub reads at run
time must be in what that installs, and every package must be copied in."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from tests.ops.deployment import OPS, ROOT


def test_every_file_the_packages_read_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [pattern.rstrip("*") for pattern in config["packages"]["find"]["include"]]
    data = config.get("package-data", {})
    missing = []
    for top in packages:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".typed"):
                continue
            if "__pycache__" in path.parts:
                continue
            package_dir = path.parent
            while not (package_dir / "__init__.py").exists():
                package_dir = package_dir.parent
            package = ".".join(package_dir.relative_to(ROOT).parts)
            relative = str(path.relative_to(package_dir))
            if not any(fnmatch.fnmatch(relative, glob) for glob in data.get(package, [])):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"pip install . leaves out {missing}: add them to package-data"


def test_the_image_copies_every_package_and_runs_as_no_root() -> None:
    dockerfile = (OPS / "Dockerfile").read_text()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    assert copied == {pattern.rstrip("*") for pattern in config["packages"]["find"]["include"]}
    assert re.search(r"^USER ocpp-hub$", dockerfile, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["hub"\]$', dockerfile, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert Path(".venv").name in ignored and "data" in ignored
