"""The Colab TPU notebooks, cell by cell: an install that needs the repository path and pins the tested
versions, no jax in the kernel, checked ImageNet weights, data built on the VM's disk, runs on Drive, a
resume cell, TensorBoard, the GPU runtime explained. Nothing is installed or downloaded here: shell lines
are recorded, not run."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "train_dfew_tpu.ipynb": {
        "config": "configs/dfew.py",
        "arch": "efficientnet_v2_s",
        "cli": "fer_jax.folds",
    },
    "train_see_tpu.ipynb": {"config": "configs/see.py", "arch": "resnet18", "cli": "fer_jax.train"},
}
# torchvision's ImageNet weights the papers start from: file URL -> SHA-256 (the name carries its first 8 hex)
TORCHVISION_SHA256 = {
    "https://download.pytorch.org/models/efficientnet_v2_s-dd5fe13b.pth": (
        "dd5fe13b1d60ec15317ccc8ca158186e134d3366c3dde9cb9a4e301f2dc66c74"
    ),
    "https://download.pytorch.org/models/resnet18-f37072fd.pth": (
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
    ),
}


def _code(name: str) -> list[str]:
    nb = nbformat.read(ROOT / "colab" / name, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _markdown(name: str) -> str:
    nb = nbformat.read(ROOT / "colab" / name, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _cell(name: str, text: str) -> str:
    cells = [c for c in _code(name) if text in c]
    assert cells, f"{name}: no code cell with {text!r}"
    return cells[0]


class _Shell:
    """Stands in for IPython: ``!cmd`` lines are expanded as IPython does ({expr} in the namespace) and
    recorded."""

    def __init__(self, ns: dict):
        self.ns, self.commands = ns, []

    def system(self, cmd: str) -> None:
        self.commands.append(re.sub(r"\{([^{}]+)\}", lambda m: str(eval(m.group(1), self.ns)), cmd))


def _run(source: str, ns: dict) -> _Shell:
    shell = _Shell(ns)
    ns["get_ipython"] = lambda: shell
    exec(TransformerManager().transform_cell(source), ns)
    return shell


def _settings(name: str) -> dict:
    ns: dict = {}
    exec(_code(name)[0], ns)
    return ns


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_settings_put_code_and_data_on_the_vm_and_runs_on_drive(name):
    s = _settings(name)
    assert s["FER_JAX_REPO"] == "" and s["PLATFORM"] == "tpu"
    assert s["RUNS"].startswith("/content/drive/") and s["WEIGHTS"].startswith("/content/drive/")
    for key in ("SHARDS", "LOCAL_RAW", "SRC"):  # the VM's local disk, never Drive
        assert s[key].startswith("/content/") and not s[key].startswith("/content/drive"), key


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_needs_the_repository_and_pins_the_tested_versions(name, tmp_path, monkeypatch):
    cell = _cell(name, "pip install")
    ns = _settings(name)
    with pytest.raises(SystemExit) as e:  # unset: one line saying what to set
        _run(cell, ns)
    assert "FER_JAX_REPO" in str(e.value) and "\n" not in str(e.value)
    src = tmp_path / "fer_jax"  # a checkout already in place: nothing cloned, the install recorded
    src.mkdir()
    (src / "pyproject.toml").write_text("")
    (src / "constraints.txt").write_text((ROOT / "constraints.txt").read_text())
    monkeypatch.chdir(tmp_path)
    ns = _settings(name) | {"FER_JAX_REPO": "https://example.invalid/fer_jax.git", "SRC": str(src)}
    shell = _run(cell, ns)
    (pip,) = [c for c in shell.commands if "pip install" in c]
    jax_pin = re.search(r"^jax==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    args = shlex.split(pip)
    assert args[args.index("-c") + 1] == "constraints.txt" and f"jax[tpu]=={jax_pin}" in args
    assert not any("git clone" in c for c in shell.commands)
    shell = _run(cell, ns | {"PLATFORM": "gpu"})
    assert f"jax[cuda12]=={jax_pin}" in shlex.split(shell.commands[-1])
    for code in _code(name):  # the kernel never imports jax: only the processes it starts do
        for line in code.splitlines():
            if not line.lstrip().startswith("!"):
                assert not re.search(r"\b(import jax|from jax)\b", line), line


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_weights_cell_checks_torchvision_sha256_then_converts(name, tmp_path):
    cell = _cell(name, "WEIGHTS_SHA256")
    url = re.search(r'WEIGHTS_URL = "(\S+)"', cell).group(1)
    sha = re.search(r'WEIGHTS_SHA256 = "([0-9a-f]{64})"', cell).group(1)
    assert TORCHVISION_SHA256[url] == sha and url.rsplit("-", 1)[1].split(".")[0] == sha[:8]
    (convert,) = [ln for ln in cell.splitlines() if "fer_jax.convert" in ln]
    assert f"--arch {NOTEBOOKS[name]['arch']}" in convert and '--out "{WEIGHTS}"' in convert
    # a download whose SHA-256 differs stops before the conversion (the file is faked, nothing downloaded)
    fake = cell.replace("/content/imagenet_weights.pth", str(tmp_path / "w.pth"))
    (tmp_path / "w.pth").write_bytes(b"not the weights")
    ns = _settings(name) | {"WEIGHTS": str(tmp_path / "converted"), "Path": Path}
    with pytest.raises(SystemExit, match="expected " + sha):
        _run(fake, ns)
    assert not any("fer_jax.convert" in c for c in ns["get_ipython"]().commands)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_training_commands_expect_the_platform_and_name_real_config_fields(name):
    from ml_collections import config_dict

    info = NOTEBOOKS[name]
    cell = _cell(name, "TRAIN = (")
    ns = _settings(name)
    exec(cell, ns)
    args = shlex.split(ns["TRAIN"])
    assert args[:3] == ["python", "-m", info["cli"]] and args[args.index("--config") + 1] == info["config"]
    assert "--config.train.expect_platform=tpu" in args
    assert f"--config.model.backbone_weights={ns['WEIGHTS']}" in args
    spec = importlib.util.spec_from_file_location("nb_config", ROOT / info["config"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for a in args:
        if a.startswith("--config."):
            node = config
            for part in a[len("--config.") :].split("=", 1)[0].split("."):
                assert isinstance(node, config_dict.ConfigDict) and part in node, a
                node = node[part]
    code = _code(name)
    assert (
        sum(c.strip().startswith("!{TRAIN}") for c in code) == 2
    )  # train, and the resume cell: same command
    assert any("%tensorboard --logdir {RUNS}" in c for c in code)


def test_dfew_builds_every_fold_once_on_local_disk_and_reports_the_folds():
    cell = _cell("train_dfew_tpu.ipynb", "data_prep.build")
    (build,) = [ln.strip() for ln in cell.splitlines() if "data_prep.build" in ln]
    assert '--root "{LOCAL_RAW}"' in build and '--out "{SHARDS}"' in build and "--fold all" in build
    assert "rsync" in cell or "cp " in cell  # the raw data is copied to the VM's disk first
    assert 'pip install -q -c constraints.txt -e ".[landmarks]"' in _cell(
        "train_dfew_tpu.ipynb", "pip install"
    )
    assert "report.md" in _cell("train_dfew_tpu.ipynb", "report.md")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_markdown_says_how_to_run_on_a_gpu_runtime(name):
    text = _markdown(name)
    assert "## On a GPU runtime" in text and 'PLATFORM = "gpu"' in text and "jax[cuda12]" in text
    assert "resume" in text.lower()
