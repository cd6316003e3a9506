"""The end-to-end demo behind ``make demo``: every step is the CLI a user would type on real data.

Three lanes run side by side, because a lone process leaves the 2 cores half idle during its
single-threaded start-up, initialisation and XLA compilation (30-60 s per training), which the other
lanes' work fills (measured: two 150-step trainings 211 s one after the other, 174 s together):

- dfew: synthesize -> build shards -> train MambaFER -> evaluate -> Grad-CAM / AU figures
- see:  synthesize -> build shards -> train MCO-E Net (RGB + event) -> evaluate -> expert usage
- rgb:  (once the SEE shards exist) train MCO-E Net RGB-only (paper 2 Table 2 row A) -> evaluate

then ``runs/demo/report.md`` + ``summary.json`` (``python -m fer_jax.report``) and a summary table. Each
lane's full output (progress bars included) is in ``runs/demo/logs/<lane>.log``; the terminal gets the
stage lines and a progress line every ``DEMO_TICK`` seconds (default 20). A failed stage stops every
lane, prints the end of its log and exits 1 without a report.

Environment: ``PY`` (the interpreter of the stage commands; default this one), ``DEMO_DIR`` (default
runs/demo; emptied first), ``DEMO_DFEW_CLIPS`` (700), ``DEMO_DFEW_TEST_FLOOR`` (test clips a class;
10, or what fewer clips allow), ``DEMO_SEE_CLIPS`` (560), ``DEMO_STEPS`` (every
training's steps; default the configs'), ``DEMO_TICK``, ``DEMO_SERIAL=1`` (the lanes one after another).
A quick look: ``DEMO_DFEW_CLIPS=140 DEMO_SEE_CLIPS=140 DEMO_STEPS=20 .venv/bin/python scripts/demo.py``.

Every command starts in a process group of its own (in the demo's session, so that its nice level counts
under autogroup scheduling), so that stopping a stage stops everything it started (grain workers
included); one loop polls all running commands, no threads.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
TAIL_LINES = 25  # lines of a failed stage's log shown on the terminal
STOP_GRACE_S = 5.0
# the seed spread of the demo's trainings (benchmarks/demo_seeds.py): the report places this run within it
SPREAD = (
    ROOT / "docs" / "bench" / "demo_seeds.json"
)  # SIGTERM first (a trainer saves and exits), then SIGKILL


@dataclass(frozen=True)
class Stage:
    """One command of a lane. ``what`` names it in the stage lines and the table (the part in parentheses
    is left out of the progress line); a training names its run folder and total steps, for progress."""

    what: str
    argv: tuple[str, ...]
    workdir: Path | None = None
    total_steps: int = 0


@dataclass
class Lane:
    """Stages run one after another; ``after`` = (lane, stages done there) holds the start back."""

    name: str
    stages: list[Stage]
    env: Mapping[str, str]
    nice: int = 0
    after: tuple[str, int] | None = None
    waiting: str = "waiting"  # the progress text before it starts
    done: int = 0  # stages finished
    proc: Any = None  # the running stage's Popen
    started: float = 0.0  # the running stage's start (runner clock)
    failed: bool = False

    @property
    def current(self) -> Stage | None:
        return self.stages[self.done] if self.proc is not None else None

    @property
    def finished(self) -> bool:
        return self.done == len(self.stages)


@dataclass(frozen=True)
class Settings:
    """What the environment decides (see the module docstring)."""

    py: str
    out: Path
    dfew_clips: int
    dfew_test_floor: int
    see_clips: int
    tick_s: float
    steps: int | None
    serial: bool
    base_env: dict[str, str] = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        out = Path(environ.get("DEMO_DIR") or "runs/demo")
        env = dict(environ)
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        # evaluate / interpret reuse the evaluation programs that training compiled (persistent XLA cache)
        env.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / ".jax_cache"))
        # ... including the many sub-second programs of eager initialisation, which the later runs share
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        steps = environ.get("DEMO_STEPS")
        dfew_clips = int(environ.get("DEMO_DFEW_CLIPS") or 700)
        return cls(
            py=environ.get("PY") or sys.executable,
            out=out,
            dfew_clips=dfew_clips,
            # up to 10 test clips a class, as many as the clips allow (7 classes x 5 folds per step)
            dfew_test_floor=int(environ.get("DEMO_DFEW_TEST_FLOOR") or min(10, dfew_clips // 35)),
            see_clips=int(environ.get("DEMO_SEE_CLIPS") or 560),
            tick_s=float(environ.get("DEMO_TICK") or 20),
            steps=int(steps) if steps else None,
            serial=bool(environ.get("DEMO_SERIAL")),
            base_env=env,
        )


def build_lanes(s: Settings) -> list[Lane]:
    """The three lanes with the commands a user would type (sizes from configs/demo_*.py)."""
    sys.path.insert(0, str(ROOT))
    from configs import demo_dfew, demo_see, demo_see_rgb

    dfew_c, see_c, rgb_c = demo_dfew.get_config(), demo_see.get_config(), demo_see_rgb.get_config()
    d, out, py = dfew_c.data, s.out, s.py
    steps = [f"--config.train.num_steps={s.steps}", f"--config.train.eval_every_steps={s.steps}"]
    steps = steps if s.steps else []

    def train(what: str, config: str, workdir: Path, data: Path, default_steps: int) -> Stage:
        argv = (py, "-m", "fer_jax.train", "--config", config, "--workdir", str(workdir))
        argv += (f"--config.data.dir={data}", *steps)
        return Stage(what, argv, workdir=workdir, total_steps=s.steps or int(default_steps))

    dfew_stages = [
        # clips of median 16 frames (the default 32 is closer to DFEW): the build keeps 8 of them anyway;
        # 10 test clips of every class (DFEW's own Disgust share gives 2, each worth 7 UAR points)
        Stage(
            f"synthesize DFEW-layout clips ({s.dfew_clips})",
            (py, "-m", "data_prep.synthesize", "--kind", "dfew", "--out", str(out / "raw/dfew"), "--clips")
            + (str(s.dfew_clips), "--seed", "0", "--nuisance", "0.3", "--median-frames", "16")
            + (("--test-floor", str(s.dfew_test_floor)) if s.dfew_test_floor else ()),
        ),
        Stage(
            f"build DFEW shards ({d.stored_frames} frames at {d.image_size}px, landmark alignment)",
            (py, "-m", "data_prep.build", "--dataset", "dfew", "--root", str(out / "raw/dfew"), "--out")
            + (str(out / "shards/dfew"), "--frames", str(d.stored_frames), "--size", str(d.image_size))
            + ("--landmarks", f"file:{out / 'raw/dfew/landmarks'}"),
        ),
        train(
            f"train MambaFER (configs/demo_dfew.py, {d.num_frames} of the {d.stored_frames} frames)",
            "configs/demo_dfew.py",
            out / "mambafer",
            out / "shards/dfew",
            dfew_c.train.num_steps,
        ),
        Stage(
            "evaluate MambaFER on the test split",
            (py, "-m", "fer_jax.evaluate", "--workdir", str(out / "mambafer")),
        ),
        Stage(
            "Grad-CAM strips and AU curves (MambaFER)",
            (py, "-m", "fer_jax.interpret", "--workdir", str(out / "mambafer"), "--clips", "0", "1", "2"),
        ),
    ]
    see_stages = [
        Stage(
            f"synthesize SEE-layout sequences ({s.see_clips})",
            (py, "-m", "data_prep.synthesize", "--kind", "see", "--out", str(out / "raw/see"), "--clips")
            + (str(s.see_clips), "--seed", "0", "--no-raw-events"),
        ),
        Stage(
            f"build SEE shards ({see_c.data.image_size}px, RGB + event frames)",
            (py, "-m", "data_prep.build", "--dataset", "see", "--root", str(out / "raw/see"), "--out")
            + (str(out / "shards/see"), "--size", str(see_c.data.image_size)),
        ),
        train(
            "train MCO-E Net, RGB + event (configs/demo_see.py)",
            "configs/demo_see.py",
            out / "mco_e_net",
            out / "shards/see",
            see_c.train.num_steps,
        ),
        Stage("evaluate MCO-E Net", (py, "-m", "fer_jax.evaluate", "--workdir", str(out / "mco_e_net"))),
        Stage(
            "expert usage (MCO-E Net)",
            (py, "-m", "fer_jax.interpret", "--workdir", str(out / "mco_e_net"), "--clips", "0", "1", "2"),
        ),
    ]
    rgb_stages = [
        train(
            "train MCO-E Net, RGB only (configs/demo_see_rgb.py, paper 2 Table 2 row A)",
            "configs/demo_see_rgb.py",
            out / "mco_e_net_rgb",
            out / "shards/see",
            rgb_c.train.num_steps,
        ),
        Stage(
            "evaluate MCO-E Net RGB-only",
            (py, "-m", "fer_jax.evaluate", "--workdir", str(out / "mco_e_net_rgb")),
        ),
    ]
    # LLVM at -O1 compiles MambaFER's step in 30 s instead of 38 s at the same step time
    # (benchmarks/train_step.py); the SEE lanes keep the default, because any change of float rounding
    # moved MCO-E Net's old 600-step result (measured: 85.1 -> 78.6 with this flag)
    dfew_env = {**s.base_env}
    dfew_env["XLA_FLAGS"] = f"{s.base_env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=1".strip()
    # the SEE lane (MCO-E Net's 1200 steps) is the longest: the other two lanes yield the CPU to it (nice)
    lanes = [
        Lane("dfew", dfew_stages, dfew_env, nice=5),
        Lane("see", see_stages, s.base_env),
        Lane("rgb", rgb_stages, s.base_env, nice=5, after=("see", 2), waiting="waiting for the SEE shards"),
    ]
    if s.serial:
        lanes[1].after, lanes[1].waiting = ("dfew", len(dfew_stages)), "waiting for the dfew lane"
        lanes[2].after, lanes[2].waiting = ("see", len(see_stages)), "waiting for the see lane"
    return lanes


def _clock_text(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def training_progress(workdir: Path, total_steps: int) -> str | None:
    """``"step/total (m:ss left)"`` from the run's ``metrics.jsonl`` (one row per log step, written by
    fer_jax.training.logging), or None before the first row. The time left comes from the rate between the
    first and the last logged step: the first row is written after the first steps, so the compilation
    before them does not count (from the start, a 40-s compile would inflate every early estimate)."""
    try:
        text = (workdir / "metrics.jsonl").read_text()
    except OSError:
        return None
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line the trainer is writing right now
            continue
        if row.get("split") == "train":
            rows.append(row)
    if not rows:
        return None
    first, last = rows[0], rows[-1]
    shown = f"{last['step']}/{total_steps}"
    if last["step"] > first["step"] and last["time"] > first["time"]:
        rate = (last["step"] - first["step"]) / (last["time"] - first["time"])
        shown += f" ({_clock_text(max(total_steps - last['step'], 0) / rate)} left)"
    return shown


def _log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log, carriage returns (progress bar redraws) read as line ends."""
    with open(path, "rb") as f:
        f.seek(max(f.seek(0, os.SEEK_END) - 64_000, 0))
        text = f.read().decode(errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()][-lines:]


class _NotStarted:
    """Stands in for the Popen of a command that could not start: exited with 127, as a shell says."""

    pid = None
    returncode = 127

    def poll(self) -> int:
        return self.returncode

    def wait(self) -> int:
        return self.returncode


def _signal_group(proc: Any, sig: int) -> None:
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, sig)  # process_group=0: the group's id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


class Runner:
    """Runs the lanes: starts each lane's next stage when it may, polls every running command, prints the
    stage lines and a progress line every ``tick_s``, and stops everything at the first failure.

    ``clock``, ``sleep`` and ``spawn`` (``subprocess.Popen``'s signature) are injectable for tests."""

    def __init__(
        self,
        lanes: Sequence[Lane],
        logs: Path,
        *,
        out: IO[str] = sys.stdout,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        spawn: Callable[..., Any] = subprocess.Popen,
        poll_s: float = 0.25,
        tick_s: float = 20.0,
        cwd: Path = ROOT,
    ):
        self.lanes = {lane.name: lane for lane in lanes}
        self.logs, self.out, self.clock, self.sleep, self.spawn = logs, out, clock, sleep, spawn
        self.poll_s, self.tick_s, self.cwd = poll_s, tick_s, cwd
        self.times: list[tuple[str, str, int]] = []  # (lane, stage, seconds) of finished stages
        self.t0 = clock()
        self._color = hasattr(out, "isatty") and out.isatty()

    def say(self, text: str, style: str = "") -> None:
        line = f"[demo {self.elapsed():4d}s]{text}"
        if style and self._color:
            line = f"\033[{style}m{line}\033[0m"
        print(line, file=self.out, flush=True)

    def elapsed(self) -> int:
        return int(self.clock() - self.t0)

    def run(self) -> bool:
        """True when every stage succeeded; False after a failure (every lane stopped)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        next_tick = self.t0 + self.tick_s
        try:
            while True:
                failed = self._reap()
                if failed is not None:
                    self._fail(failed)
                    return False
                self._start_ready()
                if all(lane.finished for lane in self.lanes.values()):
                    return True
                if self.clock() >= next_tick:
                    self.say(" " + self.progress_line())
                    while next_tick <= self.clock():  # a slow poll skips ticks rather than bunching them
                        next_tick += self.tick_s
                self.sleep(self.poll_s)
        except BaseException:  # Ctrl-C / SIGTERM / a bug here: no stage may outlive the demo
            self.stop_all()
            raise

    def _start_ready(self) -> None:
        for lane in self.lanes.values():
            if lane.proc is not None or lane.finished or lane.failed:
                continue
            if lane.after is not None and self.lanes[lane.after[0]].done < lane.after[1]:
                continue
            stage = lane.stages[lane.done]
            log = self.logs / f"{lane.name}.log"
            self.say(f" {lane.name:<5} start  {stage.what}")
            with open(log, "a") as f:
                f.write(f"\n=== {stage.what}\n$ {shlex.join(stage.argv)}\n")
                f.flush()
                try:
                    lane.proc = self.spawn(
                        list(stage.argv),
                        stdin=subprocess.DEVNULL,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        cwd=self.cwd,
                        env=dict(lane.env),
                        # its own process group (a stop reaches its children too) but NOT its own session:
                        # with the kernel's autogroup scheduling (sched_autogroup_enabled=1, the default on
                        # desktop and cloud kernels) every session is a scheduling group of its own and
                        # shares the CPU equally with the others whatever its nice level, so the lanes'
                        # nice 5 did nothing under start_new_session (measured: MCO-E Net's training
                        # 613 s instead of 291 s beside the other two lanes)
                        process_group=0,
                        preexec_fn=functools.partial(os.nice, lane.nice)
                        if lane.nice
                        else None,  # no threads: safe
                    )
                except OSError as e:  # e.g. no interpreter at PY: a failed stage like any other
                    f.write(f"cannot start {stage.argv[0]}: {e}\n")
                    lane.proc = _NotStarted()
            lane.started = self.clock()

    def _reap(self) -> Lane | None:
        """Collects finished stages; returns the first lane whose stage failed."""
        for lane in self.lanes.values():
            if lane.proc is None or lane.proc.poll() is None:
                continue
            stage, rc = lane.stages[lane.done], lane.proc.returncode
            seconds = int(self.clock() - lane.started)
            if rc != 0:
                lane.failed = True
                return lane
            lane.proc = None
            lane.done += 1
            self.times.append((lane.name, stage.what, seconds))
            with open(self.logs / "times.tsv", "a") as f:
                f.write(f"{lane.name}\t{stage.what}\t{seconds}\n")
            self.say(f" {lane.name:<5} done   {stage.what} ({seconds}s)")
        return None

    def _fail(self, lane: Lane) -> None:
        stage = lane.stages[lane.done]
        self.stop_all()
        log = self.logs / f"{lane.name}.log"
        self.say(f" {lane.name:<5} FAILED {stage.what}; the end of {log}:", "1;31")
        for line in _log_tail(log):
            print(line, file=self.out)
        self.out.flush()

    def stop_all(self) -> None:
        """SIGTERM to every started stage's process group, SIGKILL to what is left after the grace time;
        the failed stage's group too (its leader has exited, its children may not have)."""
        procs = [lane.proc for lane in self.lanes.values() if lane.proc is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = self.clock() + STOP_GRACE_S
        while any(p.poll() is None for p in procs) and self.clock() < deadline:
            self.sleep(min(self.poll_s, 0.05))
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        for lane in self.lanes.values():
            lane.proc = None

    def lane_status(self, lane: Lane) -> str:
        if lane.failed:
            return f"FAILED: {lane.stages[lane.done].what}"
        if lane.finished:
            return "done"
        stage = lane.current
        if stage is None:
            return lane.waiting
        shown = stage.what.split(" (")[0]
        if stage.workdir is not None:
            progress = training_progress(stage.workdir, stage.total_steps)
            if progress:
                shown += " " + progress
        return shown

    def progress_line(self) -> str:
        return " | ".join(f"{lane.name}: {self.lane_status(lane)}" for lane in self.lanes.values())

    def table(self) -> str:
        """The stage times, aligned (lanes overlap, so they add up to more than the total)."""
        if not self.times:
            return ""
        w0 = max(len(lane) for lane, _, _ in self.times)
        w1 = max(len(what) for _, what, _ in self.times)
        return "\n".join(f"{lane:<{w0}}  {what:<{w1}}  {s:>4d}" for lane, what, s in self.times)


def report_argv(s: Settings, started: float) -> list[str]:
    out = s.out
    return [
        s.py,
        "-m",
        "fer_jax.report",
        "--out",
        str(out / "report.md"),
        "--started",
        str(int(started)),
        "--max-minutes",
        "10",
        "--run",
        f"mambafer={out / 'mambafer'}",
        "--run",
        f"mco_e_net={out / 'mco_e_net'}",
        "--run",
        f"mco_e_net_rgb={out / 'mco_e_net_rgb'}",
        "--target",
        "mambafer.uar>=0.80",
        "--target",
        "mco_e_net.uar>=0.85",
        "--compare-lighting",
        "mco_e_net,mco_e_net_rgb,low,0.05",
    ] + (["--spread", str(SPREAD)] if SPREAD.is_file() else [])


def main(environ: Mapping[str, str] | None = None, out: IO[str] = sys.stdout) -> int:
    """Runs the demo; the exit status: 0, 1 after a failed stage, 130 when interrupted, else the report's."""
    os.chdir(ROOT)  # the stage commands name configs/ and the output folder relative to the repository
    started = time.time()
    s = Settings.from_env(os.environ if environ is None else environ)
    lanes = build_lanes(s)
    if s.out.exists():
        # the demo empties its own folder only: a DEMO_DIR that holds something else is refused
        if any(s.out.iterdir()) and not (s.out / "logs").is_dir():
            print(
                f"demo: {s.out} exists and is not a demo folder (no logs/); choose another DEMO_DIR",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(s.out)
    logs = s.out / "logs"
    runner = Runner(lanes, logs, out=out, tick_s=s.tick_s)
    mode = "one lane after another" if s.serial else "three lanes side by side"
    print(f"[demo] {mode}; full output in {logs}/<lane>.log", file=out, flush=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the runner stops every lane on its way out

    signal.signal(signal.SIGTERM, terminate)
    try:
        ok = runner.run()
    except KeyboardInterrupt:
        print("demo interrupted: every lane stopped", file=sys.stderr)
        return 130
    if not ok:
        print("demo stopped: a stage failed (see above)", file=sys.stderr)
        return 1
    print(file=out)
    runner.say(" stage times (seconds; lanes overlap)", "1")
    print(runner.table(), file=out)
    print(file=out)
    runner.say(" report", "1")
    out.flush()
    return subprocess.call(report_argv(s, started), cwd=ROOT, env=s.base_env)


if __name__ == "__main__":
    sys.exit(main())
