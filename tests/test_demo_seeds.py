"""benchmarks/demo_seeds.py --reuse: an unchanged run's results are taken from an earlier JSON of the script
(not trained again), named in the table, and refused when the file lacks a combination asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_support import load_script

ROOT = Path(__file__).resolve().parents[1]


def _module():
    return load_script("benchmarks/demo_seeds.py")


def _earlier(tmp_path, seeds=(0, 1, 2), name="earlier.json") -> Path:
    """An earlier JSON with six MambaFER and six MCO-E Net results (distinct values per combination)."""
    results = []
    for i, (seed, opt) in enumerate([(s, o) for s in seeds for o in ("default", "O1")]):
        results.append({"run": "mambafer", "seed": seed, "opt": opt, "war": 0.90 + 0.01 * i, "uar": 0.81 + 0.01 * i,
                        "low": None})  # fmt: skip
        results.append({"run": "mco_e_net", "seed": seed, "opt": opt, "war": 0.1, "uar": 0.1, "low": 0.1})
    f = tmp_path / name
    f.write_text(json.dumps({"command": "python benchmarks/demo_seeds.py --tag old", "date": "2026-12-01",
                             "results": results}))  # fmt: skip
    return f


def test_reused_run_fills_the_table_and_is_named(tmp_path, capsys):
    seeds = _module()
    earlier = _earlier(tmp_path)
    out = tmp_path / "table.md"
    # MCO-E Net has no finished runs in --work: listed as not run (rc 1); MambaFER comes from the earlier file
    rc = seeds.main(["--work", str(tmp_path / "runs"), "--summarise-only", "--runs", "mambafer", "mco_e_net",
                     "--reuse", f"{earlier}:mambafer", "--out", str(out)])  # fmt: skip
    assert rc == 1
    written = json.loads(out.with_suffix(".json").read_text())
    mamba = [r for r in written["results"] if r["run"] == "mambafer"]
    assert sorted((r["seed"], r["opt"], round(r["uar"], 4)) for r in mamba) == sorted(
        (s, o, round(0.81 + 0.01 * i, 4))
        for i, (s, o) in enumerate([(s, o) for s in (0, 1, 2) for o in ("default", "O1")])
    )
    # only the named run is reused: the earlier file's MCO-E Net rows (UAR 0.1) do not enter
    assert not [r for r in written["results"] if r["run"] == "mco_e_net"]
    assert written["runs"]["mambafer"]["uar"]["min"] == pytest.approx(0.81)
    assert written["targets"] == [
        {"target": "mambafer.uar >= 0.8", "min": pytest.approx(0.81), "met_by_min": True}
    ]
    assert written["reused"] == [
        {"file": str(earlier), "runs": ["mambafer"], "command": "python benchmarks/demo_seeds.py --tag old",
         "date": "2026-12-01"}
    ]  # fmt: skip
    table = out.read_text()
    assert f"Reused, not trained again: mambafer from `{earlier}`" in table
    assert "mco_e_net-s0-default (not run)" in table


@pytest.mark.parametrize(
    "spec, words",
    [
        ("{f}", "expected EARLIER.json:RUN"),
        ("{f}:resnet", "unknown run 'resnet'"),
        ("{missing}:mambafer", "not a benchmarks/demo_seeds.py JSON"),
        ("{short}:mambafer", "has no mambafer-s2-default"),
    ],
)
def test_reuse_refuses_bad_specs_in_one_line(tmp_path, capsys, spec, words):
    seeds = _module()
    f = _earlier(tmp_path)
    short = _earlier(tmp_path, seeds=(0, 1), name="seeds01.json")  # asked for: seeds 0, 1, 2
    spec = spec.format(f=f, missing=tmp_path / "nope.json", short=short)
    with pytest.raises(SystemExit) as e:
        seeds.main(["--work", str(tmp_path / "runs"), "--summarise-only", "--reuse", spec])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and words in err


def test_nothing_to_train_builds_no_data(tmp_path, monkeypatch):
    """Every asked-for run reused: the table is written without synthesising the demo data (about a minute)
    or starting a training; a run still to train does build it."""
    seeds = _module()
    earlier = _earlier(tmp_path)
    built = []
    monkeypatch.setattr(seeds, "build_data", lambda data, py: built.append(data))
    out = tmp_path / "table.md"
    rc = seeds.main(["--work", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "--runs", "mambafer",
                     "--reuse", f"{earlier}:mambafer", "--out", str(out)])  # fmt: skip
    assert rc == 0 and built == [] and out.exists()
    started = []
    monkeypatch.setattr(seeds, "run_one", lambda *a: started.append(a) or (_ for _ in ()).throw(RuntimeError))
    with pytest.raises(RuntimeError):  # MCO-E Net would train: the data is built first, then a run starts
        seeds.main(["--work", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "--runs", "mco_e_net",
                    "--out", str(out)])  # fmt: skip
    assert built == [(tmp_path / "data").resolve()] and len(started) == 1
