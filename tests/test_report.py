"""The demo report: numbers come from the runs' metrics.json, targets are measured not assumed."""

import json

import pytest
from script_support import load_script

from fer_jax import report


def _run(tmp_path, name, war, uar, per_lighting=None):
    wd = tmp_path / name
    d = wd / "eval" / "test-best"
    d.mkdir(parents=True)
    m = {
        "war": war,
        "uar": uar,
        "macro_f1": uar - 0.01,
        "num_examples": 40,
        "checkpoint_step": 100,
        "per_class": {"happy": 0.9, "sad": 0.5},
    }
    if per_lighting:
        m["per_lighting"] = per_lighting
    (d / "metrics.json").write_text(json.dumps(m))
    (wd / "figures").mkdir()
    (wd / "figures" / "curves.png").write_bytes(b"\x89PNG")
    return wd


def test_report_measures_targets_and_lighting_gap(tmp_path):
    a = _run(tmp_path, "both", 0.9, 0.88, {"normal": 0.95, "low": 0.90})
    b = _run(tmp_path, "rgb", 0.8, 0.79, {"normal": 0.94, "low": 0.70})
    out = tmp_path / "out" / "report.md"
    s = report.build_report(
        {"both": a, "rgb": b},
        out=out,
        targets=[report.Target.parse("both.uar>=0.85"), report.Target.parse("rgb.uar>=0.85")],
        lighting_comparisons=[("both", "rgb", "low", 0.05)],
    )
    assert [t["met"] for t in s["targets"]] == [True, False]
    comp = s["lighting_comparisons"][0]
    assert comp["difference"] == pytest.approx(0.20)
    assert comp["met"]
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["models"]["both"]["uar"] == 0.88
    assert saved["models"]["rgb"]["per_lighting"]["low"] == 0.70
    text = out.read_text()
    assert "| both | 90.0 | 88.0 |" in text
    assert "../both/figures/curves.png" in text
    assert "**no**" in text  # the missed target is shown as missed


def test_missing_lighting_is_not_met(tmp_path):
    a = _run(tmp_path, "a", 0.5, 0.5)
    s = report.build_report({"a": a}, out=tmp_path / "r.md", lighting_comparisons=[("a", "a", "low", 0.0)])
    assert s["lighting_comparisons"][0]["difference"] is None
    assert not s["lighting_comparisons"][0]["met"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert report.main(["--out", str(tmp_path / "r.md"), "--run", f"x={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert report.main(["--out", str(tmp_path / "r.md"), "--run", "bad"]) == 2
    with pytest.raises(ValueError):
        report.Target.parse("uar>0.8")


@pytest.mark.parametrize("elapsed_s,met", [(590.0, True), (690.0, False)])
def test_time_limit_is_a_measured_target(tmp_path, elapsed_s, met):
    a = _run(tmp_path, "a", 0.5, 0.5)
    s = report.build_report({"a": a}, out=tmp_path / "r.md", elapsed_s=elapsed_s, max_minutes=10)
    assert s["time_limit"]["met"] is met and s["time_limit"]["minutes"] == pytest.approx(
        elapsed_s / 60, abs=0.01
    )
    assert ("**no**" in (tmp_path / "r.md").read_text()) is not met
    assert ("MISSED" in report.format_summary(s)) is not met


@pytest.mark.parametrize(
    "target, words",
    [
        ("both.uarr>=0.8", "no metric 'uarr'"),
        ("bothh.uar>=0.8", "no run 'bothh'"),
        ("both.per_class.sadd>=0.5", "no metric"),
    ],
)
def test_target_with_a_typo_is_refused_not_reported_missed(tmp_path, capsys, target, words):
    a = _run(tmp_path, "both", 0.9, 0.88)
    with pytest.raises(ValueError, match=words):
        report.build_report({"both": a}, out=tmp_path / "r.md", targets=[report.Target.parse(target)])
    assert not (tmp_path / "r.md").exists()
    rc = report.main(["--out", str(tmp_path / "r.md"), "--run", f"both={a}", "--target", target])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "\n" not in err


def _spread_file(tmp_path):
    """A spread JSON as benchmarks/demo_seeds.py writes it, from six seeded results of each run."""
    seeds = load_script("benchmarks/demo_seeds.py")
    results = []
    for i, (seed, opt) in enumerate([(s, o) for s in (0, 1, 2) for o in ("default", "O1")]):
        results.append({"run": "mco_e_net", "seed": seed, "opt": opt, "war": 0.86 + 0.01 * i, "uar": 0.86 + 0.01 * i,
                        "low": 0.80})  # fmt: skip
        results.append(
            {"run": "mco_e_net_rgb", "seed": seed, "opt": opt, "war": 0.6, "uar": 0.6, "low": 0.2 + 0.01 * i}
        )
    summary = seeds.summarise(results)
    # the benchmark's own reading: UAR 86-91 over six runs; the gap 80 - (20..25) paired by seed and level
    assert summary["runs"]["mco_e_net"]["uar"]["min"] == pytest.approx(0.86)
    assert summary["runs"]["mco_e_net"]["uar"]["n"] == 6
    assert summary["gap"]["min"] == pytest.approx(0.55) and summary["gap"]["met_by_min"]
    assert summary["targets"] == [
        {"target": "mco_e_net.uar >= 0.85", "min": pytest.approx(0.86), "met_by_min": True}
    ]
    f = tmp_path / "demo_seeds.json"
    f.write_text(json.dumps({"runs": summary["runs"]}))
    return f


def test_report_places_this_run_within_the_documented_seed_spread(tmp_path, capsys):
    spread = _spread_file(tmp_path)
    typical = _run(tmp_path, "mco_e_net", 0.88, 0.88, {"normal": 0.9, "low": 0.80})
    unlucky = _run(tmp_path, "mco_e_net_rgb", 0.5, 0.5, {"normal": 0.9, "low": 0.10})
    out = tmp_path / "out" / "report.md"
    assert report.main(["--out", str(out), "--run", f"mco_e_net={typical}", "--run", f"mco_e_net_rgb={unlucky}",
                        "--spread", str(spread)]) == 0  # fmt: skip
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {(r["model"], r["metric"]): r for r in s["spread"]}
    assert rows[("mco_e_net", "uar")]["position"] == "within"
    assert rows[("mco_e_net_rgb", "uar")]["position"] == "below"  # 50 against 60 in every seeded run
    assert rows[("mco_e_net_rgb", "low")]["position"] == "below"
    assert rows[("mco_e_net", "uar")]["mean"] == pytest.approx(0.885)
    text = out.read_text()
    assert "| mco_e_net | UAR | 88.0 | 88.5 +- 1.9 | 86.0 - 91.0 | within the range |" in text
    assert "**below the range**" in text
    printed = capsys.readouterr().out
    assert (
        "mco_e_net: UAR 88.0 against 88.5 +- 1.9 over 6 seeded runs (range 86.0-91.0): within the range"
        in printed
    )


def test_unreadable_spread_file_is_one_line(tmp_path, capsys):
    a = _run(tmp_path, "a", 0.5, 0.5)
    bad = tmp_path / "spread.json"
    bad.write_text("{}")
    assert report.main(["--out", str(tmp_path / "r.md"), "--run", f"a={a}", "--spread", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a benchmarks/demo_seeds.py result" in err
