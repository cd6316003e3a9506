"""Process-level behaviour of the trainer, each in a subprocess: SIGTERM mid-run leaves a restorable
checkpoint, and 4 (virtual) CPU devices train to the same losses as 1 device."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
import test_train_support  # noqa: E402, F401  (registers the tiny model that the restore below builds)

_SCRIPT = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
import test_train_support as support
from fer_jax.training import loop
cfg = support.tiny_config(**json.loads({train!r}))
summary = loop.train(cfg, {workdir!r}, data=support.ToyData(num_train=400), progress=False)
print("SUMMARY " + json.dumps({{k: summary[k] for k in ("status", "step", "signal")}}), flush=True)
"""


def _popen(workdir, devices: int = 1, env_extra: dict | None = None, **train):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    code = _SCRIPT.format(root=str(ROOT), tests=str(TESTS), train=json.dumps(train), workdir=str(workdir))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(stdout: str) -> dict:
    line = [ln for ln in stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY ") :])


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint(tmp_path):
    proc = _popen(tmp_path, num_steps=100000, eval_every_steps=100000, log_every_steps=1)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    s = _summary(out)
    assert s["status"] == "interrupted" and s["signal"] == signal.SIGTERM and s["step"] >= 3

    from fer_jax.training.run import Run

    run = Run.restore(tmp_path, "latest")
    assert run.step == s["step"] and int(run.state["step"]) == run.step


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path):
    runs = {}
    for devices in (1, 4):
        workdir = tmp_path / f"d{devices}"
        proc = _popen(workdir, devices, num_steps=6, eval_every_steps=6, log_every_steps=1)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert _summary(out)["status"] == "finished"
        rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        runs[devices] = rows
    loss = {d: np.array([r["loss"] for r in rows if r["split"] == "train"]) for d, rows in runs.items()}
    assert len(loss[1]) == 6
    np.testing.assert_allclose(loss[4], loss[1], rtol=1e-4, atol=1e-5)
    uar = {d: [r["uar"] for r in rows if r["split"] == "test"] for d, rows in runs.items()}
    np.testing.assert_allclose(uar[4], uar[1], atol=1e-6)


@pytest.mark.slow
def test_two_process_cpu_rehearsal(tmp_path):
    """The documented multi-host rehearsal: 2 JAX processes (gloo) on this machine share one run."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [
        _popen(
            tmp_path,
            env_extra={
                "FER_JAX_COORDINATOR": f"127.0.0.1:{port}",
                "FER_JAX_NUM_PROCESSES": "2",
                "FER_JAX_PROCESS_ID": str(i),
            },
            num_steps=4,
            eval_every_steps=2,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    summaries = [_summary(out) for out, _ in outs]
    assert summaries[0] == summaries[1] and summaries[0]["status"] == "finished"
    iter_files = sorted(
        x.name for x in (tmp_path / "checkpoints" / "latest" / "4" / "data_iter").glob("*.json")
    )
    assert iter_files == ["process_0-of-2.json", "process_1-of-2.json"]
