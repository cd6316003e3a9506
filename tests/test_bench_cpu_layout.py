"""benchmarks/conv_layout.py's ResNet-18 shapes and run; benchmarks/cpu_threads.py's argument checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # their `report_text` import

from benchmarks import conv_layout, cpu_threads  # noqa: E402


@pytest.mark.parametrize(("size", "published"), [(112, 0.485), (224, 1.81)])
def test_the_convolutions_are_resnet18s(size, published):
    rows = conv_layout.resnet18_convs(size)
    assert sum(r[1] for r in rows) == 20  # stem + 16 in the blocks + 3 downsampling 1x1
    macs = sum(n * cin * cout * k * k * (-(-side // s)) ** 2 for _, n, cin, cout, k, s, side in rows)
    # with the classifier's 512 x 1000, the published GMACs of torchvision's ResNet-18 (REFERENCES.md)
    assert (macs + 512 * 1000) / 1e9 == pytest.approx(published, rel=0.01)


def test_both_layouts_run_agree_and_are_tabled(tmp_path, capsys):
    out = tmp_path / "t.md"
    assert conv_layout.main(["--size", "32", "--batch", "1", "--iters", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()  # printed and written alike
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms" not in line]
    assert len(rows) == 12 and rows[-1].startswith("| **ResNet-18's convolutions, weighted**")
    assert text.startswith("Printed by `python benchmarks/conv_layout.py --size 32")


def test_cpu_threads_refuses_a_bad_pool_size(capsys):
    with pytest.raises(SystemExit) as e:
        cpu_threads.main(["--threads", "default", "two"])
    assert e.value.code == 2 and "whole number, got 'two'" in capsys.readouterr().err
