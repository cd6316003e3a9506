"""scripts/demo.py runs its lanes side by side: a failing stage must stop the whole demo, say which stage
failed with the end of its log, and leave no lane running behind it; a successful demo prints the stage
table and calls the report; the progress line's time left leaves the compilation out.

The end-to-end tests run the real script with a stand-in interpreter (``PY``), so the lanes, commands,
environment and nice levels are the script's own; the progress tests drive the Runner with a fake clock.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo.py"

spec = importlib.util.spec_from_file_location("demo_script", SCRIPT)
demo = importlib.util.module_from_spec(spec)
sys.modules["demo_script"] = demo  # dataclasses look their module up by name
spec.loader.exec_module(demo)

# The stand-in interpreter. Every call appends "nice=<N> xla=<XLA_FLAGS> <args>" to $FAKE_DIR/calls.
# Commands matching the regex $FAKE_LONG record their pid and sleep 60 s (a lane that is busy); the
# command containing $FAKE_FAIL waits until $FAKE_WAIT_N such commands run, then fails (exit 3), so the
# test sees a failure while the other lanes are mid-stage; everything else succeeds at once.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "nice=$(cut -d' ' -f19 /proc/$$/stat) xla=[${XLA_FLAGS:-}] $*" >> "$FAKE_DIR/calls"
if [[ -n "${FAKE_FAIL:-}" && "$*" == *"$FAKE_FAIL"* ]]; then
  while [ "$(cat "$FAKE_DIR/long.pids" 2>/dev/null | wc -l)" -lt "${FAKE_WAIT_N:-0}" ]; do sleep 0.02; done
  echo "progress 10%"; printf 'bar 1/3\rbar 2/3\r'; echo "boom: cannot read the raw folder"
  exit 3
fi
if [[ -n "${FAKE_LONG:-}" && "$*" =~ $FAKE_LONG ]]; then
  echo $$ >> "$FAKE_DIR/long.pids"
  exec sleep 60
fi
echo "fine"
"""


def _run_demo(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    fake = tmp_path / "fake"
    fake.mkdir()
    python = fake / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    full_env = {**os.environ, "PY": str(python), "DEMO_DIR": str(tmp_path / "demo"), "FAKE_DIR": str(fake)}
    full_env.pop("XLA_FLAGS", None)
    full_env.pop("DEMO_SERIAL", None)
    full_env.update(env)
    p = subprocess.run(
        [sys.executable, str(SCRIPT)], env=full_env, capture_output=True, text=True, timeout=40, cwd=tmp_path
    )
    return p, fake


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "fail_on, long, wait_n, lane, stage",
    [
        ("--kind see", r"--kind dfew", 1, "see", "synthesize SEE-layout sequences"),
        ("--kind dfew", r"--kind see", 1, "dfew", "synthesize DFEW-layout clips"),
        # the see lane fails while the rgb lane (and the dfew lane) train: both must be stopped
        (
            "configs/demo_see.py",
            r"demo_see_rgb\.py|demo_dfew\.py",
            2,
            "see",
            "train MCO-E Net, RGB \\+ event",
        ),
    ],
    ids=["see-synthesis", "dfew-synthesis", "mco-e-net-training"],
)
def test_failed_stage_stops_every_lane(tmp_path, fail_on, long, wait_n, lane, stage):
    p, fake = _run_demo(tmp_path, FAKE_FAIL=fail_on, FAKE_LONG=long, FAKE_WAIT_N=str(wait_n))
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(rf"\] {lane} +FAILED {stage}", out), out
    tail = p.stdout.split("FAILED", 1)[1]
    # the end of the failing lane's log, progress-bar redraws as lines
    assert "boom: cannot read the raw folder" in tail and "bar 2/3" in tail, out
    assert "demo stopped: a stage failed" in p.stderr
    assert "fer_jax.report" not in (fake / "calls").read_text()  # no report after a failure
    assert not (tmp_path / "demo" / "report.md").exists()
    pids = [int(x) for x in (fake / "long.pids").read_text().split()]
    assert len(pids) == wait_n
    assert not [pid for pid in pids if _alive(pid)], "a lane kept running after the demo stopped"


@pytest.mark.parametrize("serial", ["", "1"], ids=["lanes", "serial"])
def test_success_prints_stage_table_and_calls_report(tmp_path, serial):
    p, fake = _run_demo(
        tmp_path, DEMO_DFEW_CLIPS="70", DEMO_SEE_CLIPS="35", DEMO_STEPS="5", DEMO_SERIAL=serial
    )
    assert p.returncode == 0, p.stdout + p.stderr
    calls = (fake / "calls").read_text().splitlines()
    out_dir = tmp_path / "demo"
    stages = {
        "dfew": [
            "synthesize DFEW-layout clips (70)",
            "build DFEW shards (8 frames at 64px, landmark alignment)",
            "train MambaFER (configs/demo_dfew.py, 4 of the 8 frames)",
            "evaluate MambaFER on the test split",
            "Grad-CAM strips and AU curves (MambaFER)",
        ],
        "see": [
            "synthesize SEE-layout sequences (35)",
            "build SEE shards (80px, RGB + event frames)",
            "train MCO-E Net, RGB + event (configs/demo_see.py)",
            "evaluate MCO-E Net",
            "expert usage (MCO-E Net)",
        ],
        "rgb": [
            "train MCO-E Net, RGB only (configs/demo_see_rgb.py, paper 2 Table 2 row A)",
            "evaluate MCO-E Net RGB-only",
        ],
    }
    table = p.stdout.split("stage times (seconds; lanes overlap)", 1)[1].split("report", 1)[0]
    for lane, whats in stages.items():
        for what in whats:
            assert re.search(rf"^{lane} +{re.escape(what)} +\d+$", table, re.M), (lane, what, table)
            assert re.search(rf"\] {lane} +start  {re.escape(what)}\n", p.stdout)
            assert re.search(rf"\] {lane} +done   {re.escape(what)} \(\d+s\)\n", p.stdout)
    assert (out_dir / "logs" / "dfew.log").exists() and (out_dir / "logs" / "rgb.log").exists()

    def call(pattern: str) -> int:
        hits = [i for i, c in enumerate(calls) if re.search(pattern, c)]
        assert len(hits) == 1, (pattern, calls)
        return hits[0]

    # the commands, with the DEMO_* sizes; the dfew lane compiles at -O1 and runs, like rgb, at nice +5
    nice = os.nice(0)
    synth = calls[call("--kind dfew")]
    assert synth.startswith(
        f"nice={nice + 5} xla=[--xla_backend_optimization_level=1] -m data_prep.synthesize"
    )
    assert f"--out {out_dir}/raw/dfew --clips 70 --seed 0 --nuisance 0.3 --median-frames 16" in synth
    assert (
        f"--frames 8 --size 64 --landmarks file:{out_dir}/raw/dfew/landmarks" in calls[call("--dataset dfew")]
    )
    see_train = calls[call("configs/demo_see.py")]
    assert see_train.startswith(f"nice={nice} xla=[] -m fer_jax.train --config configs/demo_see.py")
    assert see_train.endswith(
        f"--workdir {out_dir}/mco_e_net --config.data.dir={out_dir}/shards/see "
        "--config.train.num_steps=5 --config.train.eval_every_steps=5"
    )
    assert calls[call("demo_see_rgb")].startswith(f"nice={nice + 5} xla=[] -m fer_jax.train")
    assert call("demo_see_rgb") > call("--dataset see")  # rgb waits for the SEE shards
    if serial:  # one lane after another: dfew, see, rgb
        assert call("fer_jax.interpret --workdir .*mambafer") < call("--kind see")
        assert call("fer_jax.interpret --workdir .*mco_e_net ") < call("demo_see_rgb")
    report = calls[call("fer_jax.report")]
    assert (
        report
        == (
            f"nice={nice} xla=[] -m fer_jax.report --out {out_dir}/report.md --started "
            + re.search(r"--started (\d+)", report).group(1)
            + f" --max-minutes 10 --run mambafer={out_dir}/mambafer --run mco_e_net={out_dir}/mco_e_net"
            f" --run mco_e_net_rgb={out_dir}/mco_e_net_rgb --target mambafer.uar>=0.80"
            " --target mco_e_net.uar>=0.85 --compare-lighting mco_e_net,mco_e_net_rgb,low,0.05"
            # the documented seed spread, when the repository has it (benchmarks/demo_seeds.py's JSON)
             + (f" --spread {demo.SPREAD}" if demo.SPREAD.is_file() else "")
        )
    )
    assert call("fer_jax.report") == len(calls) - 1  # after every stage


def test_refuses_to_empty_a_folder_that_is_not_a_demo_folder(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "precious.txt").write_text("keep me")
    p, _ = _run_demo(tmp_path)
    assert p.returncode == 2 and "not a demo folder" in p.stderr
    assert (tmp_path / "demo" / "precious.txt").exists()


def _rows(path: Path, rows: list[tuple[int, float]], split: str = "train") -> None:
    with open(path, "a") as f:
        for step, t in rows:
            f.write(json.dumps({"step": step, "split": split, "time": t, "loss": 1.0}) + "\n")


def test_time_left_excludes_the_compilation_of_the_first_steps(tmp_path):
    # started at t=1000; the first 10 steps (logged together) took 61 s, nearly all of it compilation;
    # then 10 steps per second: 270 steps left = 27 s (from the start it would read 270 * 62 / 30 = 558 s)
    assert demo.training_progress(tmp_path, 300) is None
    _rows(tmp_path / "metrics.jsonl", [(10, 1061.0)])
    assert demo.training_progress(tmp_path, 300) == "10/300"  # one reading: no rate yet
    _rows(tmp_path / "metrics.jsonl", [(20, 1062.0), (30, 1063.0)])
    _rows(tmp_path / "metrics.jsonl", [(30, 1064.0)], split="test")  # evaluation rows do not count
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "spl')  # a row being written right now
    assert demo.training_progress(tmp_path, 300) == "30/300 (0:27 left)"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeProc:
    """Exits with ``rc`` once the fake clock reaches ``end``; ``on_poll(now)`` lets a training log rows."""

    pid = None  # no process group to signal

    def __init__(self, clock: FakeClock, seconds: float, rc: int = 0, on_poll=None) -> None:
        self.clock, self.end, self.rc, self.on_poll = clock, clock.now + seconds, rc, on_poll
        self.returncode = None

    def poll(self):
        if self.on_poll:
            self.on_poll(self.clock.now)
        if self.clock.now >= self.end:
            self.returncode = self.rc
        return self.returncode

    def wait(self):
        return self.returncode


def test_runner_progress_lines_stage_times_and_dependencies(tmp_path):
    clock = FakeClock()
    workdir = tmp_path / "run"
    workdir.mkdir()
    logged: list[int] = []

    def log_training(now: float) -> None:
        # the training starts at t=5: 60 s of compilation, then 10 steps per second, a row every 10 steps
        step = int((now - 65) * 10) // 10 * 10 if now >= 66 else 0
        if step and (not logged or step > logged[-1]) and step <= 300:
            logged.append(step)
            _rows(workdir / "metrics.jsonl", [(step, 1000.0 + now)])

    durations = {"synth": (5, 0), "train": (95, 0), "build": (30, 0), "eval": (2, 0)}
    spawned: list[tuple[str, dict]] = []

    def spawn(argv, **kw):
        spawned.append((argv[0], kw))
        seconds, rc = durations[argv[0]]
        return FakeProc(clock, seconds, rc, log_training if argv[0] == "train" else None)

    lanes = [
        demo.Lane(
            "dfew",
            [
                demo.Stage("synthesize (70)", ("synth",)),
                demo.Stage("train MambaFER (demo)", ("train",), workdir=workdir, total_steps=300),
            ],
            {"A": "1"},
            nice=5,
        ),
        demo.Lane("see", [demo.Stage("build SEE shards (80px)", ("build",))], {}),
        demo.Lane(
            "rgb",
            [demo.Stage("evaluate", ("eval",))],
            {},
            after=("see", 1),
            waiting="waiting for the SEE shards",
        ),
    ]
    out = io.StringIO()
    runner = demo.Runner(
        lanes, tmp_path / "logs", out=out, clock=clock, sleep=clock.sleep, spawn=spawn, poll_s=0.5, tick_s=20
    )
    assert runner.run()
    text = out.getvalue()
    progress = [line for line in text.splitlines() if "dfew:" in line]
    assert progress[0] == (
        "[demo   20s] dfew: train MambaFER | see: build SEE shards | rgb: waiting for the SEE shards"
    )
    # t=80: step 150 logged (the first row at t=66, after compiling); 150 left at 10 steps/s = 15 s
    # (from the training's start: 150 steps in 75 s, 75 s left)
    assert progress[3] == "[demo   80s] dfew: train MambaFER 150/300 (0:15 left) | see: done | rgb: done"
    assert [line[:12] for line in progress] == [f"[demo {t:4d}s]" for t in (20, 40, 60, 80)]
    assert [(lane, what) for lane, what, _ in runner.times] == [
        ("dfew", "synthesize (70)"),
        ("see", "build SEE shards (80px)"),
        ("rgb", "evaluate"),
        ("dfew", "train MambaFER (demo)"),
    ]
    assert [s for _, _, s in runner.times] == [5, 30, 2, 95]
    assert re.search(r"^dfew  train MambaFER \(demo\) +95$", runner.table(), re.M), runner.table()
    assert "] rgb   start  evaluate" in text and "] dfew  done   train MambaFER (demo) (95s)" in text
    assert all(kw["process_group"] == 0 and "start_new_session" not in kw for _, kw in spawned)
    assert spawned[0][1]["env"] == {"A": "1"} and spawned[0][1]["preexec_fn"] is not None
    assert spawned[1][1]["preexec_fn"] is None  # the see lane keeps the demo's own nice level
    assert "$ train\n" in (tmp_path / "logs" / "dfew.log").read_text()


def test_runner_reports_a_command_that_cannot_start(tmp_path):
    lanes = [demo.Lane("see", [demo.Stage("synthesize", (str(tmp_path / "missing"),))], dict(os.environ))]
    out = io.StringIO()
    clock = FakeClock()
    assert not demo.Runner(lanes, tmp_path / "logs", out=out, clock=clock, sleep=clock.sleep).run()
    assert "see   FAILED synthesize" in out.getvalue() and "cannot start" in out.getvalue()


def test_stages_share_the_demo_session_so_that_their_nice_level_counts(tmp_path):
    """Under autogroup scheduling each session competes as one group whatever its nice level: a stage in a
    session of its own would take an equal share from the see lane despite its nice 5. A real child reports
    its session, process group and nice level."""
    probe = "import os; print(os.getsid(0), os.getpgid(0), os.getpid(), os.nice(0))"
    lanes = [
        demo.Lane("dfew", [demo.Stage("probe", (sys.executable, "-c", probe))], dict(os.environ), nice=5)
    ]
    assert demo.Runner(lanes, tmp_path / "logs", out=io.StringIO(), poll_s=0.02).run()
    sid, pgid, pid, nice = map(int, (tmp_path / "logs" / "dfew.log").read_text().split()[-4:])
    assert sid == os.getsid(0)  # the demo's session: one scheduling group with the see lane
    assert pgid == pid  # a group of its own: stop_all's killpg reaches everything it started
    assert nice == min(os.nice(0) + 5, 19)
