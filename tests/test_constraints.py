"""constraints.txt pins what the tests run with, and the Makefile installs through it.

The check against the environment holds where the environment was installed by ``make`` (CI's fresh
clone installs with ``-c constraints.txt``); after a dependency change, ``make constraints`` rewrites it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("constraints_script", ROOT / "scripts" / "constraints.py")
constraints = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(constraints)


def test_constraints_file_pins_the_installed_dependency_closure():
    pinned = constraints.read(ROOT / "constraints.txt")
    installed = constraints.closure()
    assert "fer-jax" not in pinned and "fer_jax" not in pinned
    assert all(v and "," not in v for v in pinned.values())  # exact pins only
    for name in (
        "jax",
        "jaxlib",
        "flax",
        "tensorflow-datasets",
        "pytest",
        "dlib-bin",
    ):  # core, dev, landmarks
        assert name in pinned, name
    stale = {n: (pinned.get(n), v) for n, v in installed.items() if pinned.get(n) != v}
    extra = sorted(set(pinned) - set(installed))
    assert not stale and not extra, (
        f"constraints.txt differs from this environment ({stale or extra}): run `make constraints`"
    )


def test_closure_follows_markers_and_extras(tmp_path, monkeypatch):
    """A fake site: the project's [dev] extra pulls a tool; a marker that is false here and a package
    not installed are not pinned; a package installed but not required is not pinned either."""

    def dist(name, version, requires):
        d = tmp_path / f"{name}-{version}.dist-info"
        d.mkdir()
        lines = [f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
        (d / "METADATA").write_text("Metadata-Version: 2.1\n" + "\n".join(lines) + "\n")

    dist("proj", "1.0", ["Alpha>=1", "beta; python_version < '3'", "gamma; extra == 'dev'", "absent"])
    dist("Alpha", "2.5", ["delta[x]"])
    dist("beta", "1.0", [])
    dist("gamma", "0.3", [])
    dist("delta", "4.0", ["eps; extra == 'x'"])
    dist("eps", "0.1", [])
    dist("torch", "9.9", [])  # installed beside it, never required
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    assert constraints.closure("proj", ("dev",)) == {
        "alpha": "2.5",
        "delta": "4.0",
        "eps": "0.1",
        "gamma": "0.3",
    }
    assert "gamma" not in constraints.closure("proj", ())


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_makefile_installs_with_the_constraints(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "constraints.txt", tmp_path / "constraints.txt")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake = tmp_path / "fake_python"  # records each call instead of running pip
    fake.write_text(
        '#!/usr/bin/env bash\nif [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; '
        'exit 0; fi\necho "$@" >> "$(dirname "$0")/../../calls.txt"\n'
    )
    fake.chmod(0o755)
    p = subprocess.run(["make", "venv", f"PYTHON={fake}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert p.returncode == 0, p.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert "-m pip install -c constraints.txt -e .[dev]" in calls, calls
