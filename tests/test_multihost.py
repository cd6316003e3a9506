"""Multi-host start-up and the agreed stop (fer_jax.training.mesh / fer_jax.training.stop).

Fast: which environments start ``jax.distributed``, the agreement's max over per-device flags, and two
real JAX processes (gloo on 127.0.0.1) agreeing on one process's flag. Slow: the 2-process rehearsal of a
pre-emption that reaches one host only: ``python -m fer_jax.train`` twice (one CPU device each, so the
``('data',)`` mesh spans both processes), SIGTERM to process 1 only; both must save the same step and
exit 143 within 60 s, and the rerun must resume to the parameters of an uninterrupted 2-process run.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from compile_support import FAST_COMPILE_ENV

from fer_jax.training import mesh as mesh_lib
from fer_jax.training import stop

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(port: int, process_id: int) -> dict:
    """One CPU device per process, explicit coordinator on 127.0.0.1 (the trainer picks gloo itself)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", FER_JAX_COORDINATOR=f"127.0.0.1:{port}")
    env.update(FER_JAX_NUM_PROCESSES="2", FER_JAX_PROCESS_ID=str(process_id))
    for var in ("XLA_FLAGS", "FER_JAX_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS"):
        env.pop(var, None)
    env.update(FAST_COMPILE_ENV)  # every run at -O0: the resumed and the uninterrupted run compare alike
    return env


# ---- which environments start the distributed runtime -------------------------------------------------

_SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"FER_JAX_COORDINATOR": "h:1", "FER_JAX_NUM_PROCESSES": "2", "FER_JAX_PROCESS_ID": "1"},
         ("FER_JAX_COORDINATOR", {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1})),
        ({"JAX_COORDINATOR_ADDRESS": "h:2", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
         ("JAX_COORDINATOR_ADDRESS", {"coordinator_address": "h:2", "num_processes": 4, "process_id": 3})),
        ({"JAX_COORDINATOR_ADDRESS": "h:2"}, ("JAX_COORDINATOR_ADDRESS", {"coordinator_address": "h:2"})),
        ({**_SLURM, "SLURM_NTASKS": "2"}, ("SLURM", {})),
        ({**_SLURM, "SLURM_NTASKS": "1"}, None),  # a one-task job is a single process
        ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "4"}, ("Open MPI", {})),
        ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "1"}, None),
        ({"TPU_WORKER_HOSTNAMES": "a,b,c,d"}, ("TPU slice (TPU_WORKER_HOSTNAMES)", {})),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
        ({"MEGASCALE_COORDINATOR_ADDRESS": "h:3"}, ("TPU multislice", {})),
        ({"FER_JAX_DISTRIBUTED": "1"}, ("FER_JAX_DISTRIBUTED=1", {})),
        ({"FER_JAX_DISTRIBUTED": "0", "JAX_COORDINATOR_ADDRESS": "h:2", **_SLURM, "SLURM_NTASKS": "2"}, None),
    ],
)  # fmt: skip
def test_detect_multiprocess(environ, expected):
    assert mesh_lib.detect_multiprocess(environ, tpu_hosts=lambda: 1) == expected


def test_a_tpu_pod_slice_is_detected_from_its_metadata():
    assert mesh_lib.detect_multiprocess({}, tpu_hosts=lambda: 4) == ("TPU pod slice", {})
    assert mesh_lib.detect_multiprocess({}, tpu_hosts=lambda: 1) is None
    assert mesh_lib.detect_multiprocess({"FER_JAX_DISTRIBUTED": "0"}, tpu_hosts=lambda: 4) is None


def test_the_tpu_metadata_worker_count():
    """A stand-in metadata server: 4 workers listed -> 4; the header JAX's reader sends is required."""
    import http.server
    import threading

    class Metadata(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            ok = (
                self.path.endswith("/worker-network-endpoints")
                and self.headers["Metadata-Flavor"] == "Google"
            )
            body = b"w0:10.0.0.1:8470,w1:10.0.0.2:8470,w2:10.0.0.3:8470,w3:10.0.0.4:8470" if ok else b""
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert mesh_lib.metadata_worker_count(f"127.0.0.1:{server.server_port}") == 4
    finally:
        server.shutdown()
        server.server_close()
    assert mesh_lib.metadata_worker_count(f"127.0.0.1:{_free_port()}", timeout=1) == 1  # nobody answers


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FER_JAX_COORDINATOR": "h:1", "FER_JAX_PROCESS_ID": "0"},
         "FER_JAX_COORDINATOR is set but FER_JAX_NUM_PROCESSES is not"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "one"}, "JAX_PROCESS_ID='one' must be an integer"),
    ],
)  # fmt: skip
def test_an_incomplete_explicit_set_is_one_line(environ, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mesh_lib.detect_multiprocess(environ, tpu_hosts=lambda: 1)


# ---- the agreement ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "agreed"), [([0, 0], 0), ([0, 15], 15), ([2, 0], 2), ([2, 15], 15)])
def test_the_agreement_is_the_max_of_the_flags(flags, agreed):
    """Flags [0, SIGTERM] -> every device holds SIGTERM: both processes stop (and exit 143)."""
    mesh = mesh_lib.make_mesh()
    out = stop.agree(jax.device_put(np.array(flags, np.int32), mesh_lib.data_sharded(mesh)))
    chex.assert_shape(out, ())
    assert out.sharding.is_fully_replicated and int(out) == agreed


def test_one_process_stops_on_its_own_flag_at_once():
    agreement = stop.StopAgreement(mesh_lib.make_mesh(), every=5)
    assert not agreement.collective
    assert agreement.check(3, None) is None and agreement.check(3, signal.SIGTERM) == signal.SIGTERM
    with pytest.raises(ValueError, match=r"stop_check_every_steps=0 must be an integer >= 1"):
        stop.StopAgreement(mesh_lib.make_mesh(), every=0)


_AGREE = """
import json, sys
sys.path.insert(0, {root!r})
from fer_jax.training import mesh as mesh_lib, stop
assert mesh_lib.maybe_initialize_distributed()
import jax
mesh = mesh_lib.make_mesh()
me = jax.process_index()
once = int(stop.agree(stop.local_flags(15 if me == 1 else None, mesh)).addressable_data(0))
agreement = stop.StopAgreement(mesh, every=2)
# process 0 alone is signalled after step 3: the check at step 4 carries it, the one at 6 reads it
seq = [agreement.check(s, 2 if me == 0 and s >= 3 else None) for s in range(8)]
print("RESULT " + json.dumps({{"once": once, "seq": seq, "count": jax.process_count()}}), flush=True)
"""


def test_two_processes_agree_on_one_process_flag():
    port, code = _free_port(), _AGREE.format(root=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=_env(port, i),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    results = []
    for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, err[-2000:]
        assert f"distributed: process {i} of 2 (FER_JAX_COORDINATOR)" in err
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    expected_seq = [None] * 6 + [2, None]
    assert results == [{"once": 15, "seq": expected_seq, "count": 2}] * 2


# ---- the 2-process pre-emption rehearsal ---------------------------------------------------------------

_CONFIG = """
\"\"\"The rehearsal's config: tests/tiny_model.py with a 50 ms host sleep per step (so the SIGTERM lands
mid-run), on the tiny DFEW shards.\"\"\"
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
import jax
import tiny_model
from configs.common import base_config
from fer_jax.models import registry

NAME = "tiny_video_slow_test"


class SlowTinyVideoNet(tiny_model.TinyVideoNet):
    def __call__(self, frames, landmarks):
        jax.debug.callback(lambda: time.sleep(0.05))
        return super().__call__(frames, landmarks)


registry.register(NAME, lambda config, *, rngs: SlowTinyVideoNet(config, rngs=rngs), tiny_model.input_spec)


def get_config():
    c = base_config()
    c.model.name = NAME
    c.data.dir = {data!r}
    c.data.num_frames, c.data.stored_frames, c.data.image_size = 8, 8, 64
    c.train.batch_size, c.eval.batch_size = 2, 2
    c.train.num_steps, c.train.eval_every_steps, c.train.log_every_steps = {steps}, {steps}, 1
    return c
"""
_STEPS = 60


def _train_2p(config: Path, workdir: Path) -> list[subprocess.Popen]:
    port = _free_port()
    cmd = [sys.executable, "-m", "fer_jax.train", "--config", str(config), "--workdir", str(workdir),
           "--no_progress"]  # fmt: skip
    return [
        subprocess.Popen(
            cmd, cwd=ROOT, env=_env(port, i), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    deadline = time.time() + timeout
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"a process did not exit within {timeout} s") from None
        outs.append((p.returncode, out, err))
    return outs


def _saved_state(workdir: Path, step: int) -> dict:
    """The flat train state (params, optimizer, step) saved at ``step``, as host arrays (a 2-process
    checkpoint read by this one process: no mesh, no data-iterator restore)."""
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / "latest" / str(step) / "state"
    ckpt = ocp.PyTreeCheckpointer()
    tree = ckpt.metadata(path).item_metadata.tree
    return ckpt.restore(
        path, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    )


@pytest.mark.slow  # three 2-process runs: 174-256 s on the shared 2-core machine (load 13-19)
def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes_exactly(dfew_shards, tmp_path):
    config = tmp_path / "rehearsal.py"
    config.write_text(
        textwrap.dedent(_CONFIG).format(root=str(ROOT), tests=str(TESTS), data=str(dfew_shards), steps=_STEPS)
    )
    # the uninterrupted 2-process run
    ref = tmp_path / "ref"
    for rc, out, err in _finish(_train_2p(config, ref), 300):
        assert rc == 0 and f"finished at step {_STEPS}" in out, err[-2000:]

    # the same run, SIGTERM to process 1 only (process 0 writes the metrics) once both are past step 3
    run = tmp_path / "run"
    procs = _train_2p(config, run)
    metrics, deadline = run / "metrics.jsonl", time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
    procs[1].send_signal(signal.SIGTERM)
    results = _finish(procs, 60)
    steps = []
    for i, (rc, out, err) in enumerate(results):
        assert f"distributed: process {i} of 2" in err
        assert rc == 128 + signal.SIGTERM, err[-2000:]  # process 0 was not signalled: it exits as process 1
        steps += [int(s) for s in re.findall(r"^interrupted at step (\d+);", out, re.M)]
    assert len(steps) == 2 and steps[0] == steps[1], results  # both processes saved the same step
    step = steps[0]
    assert 3 <= step < _STEPS
    data_iter = run / "checkpoints" / "latest" / str(step) / "data_iter"
    assert sorted(x.name for x in data_iter.glob("*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]

    # the rerun (both processes) resumes there and finishes
    results = _finish(_train_2p(config, run), 300)
    for rc, out, err in results:
        assert rc == 0 and f"finished at step {_STEPS}" in out, err[-2000:]
    assert f"from step {step} of {_STEPS}" in results[0][1]
    resumed, uninterrupted = _saved_state(run, _STEPS), _saved_state(ref, _STEPS)
    assert set(resumed) == set(uninterrupted) and any(k.startswith("params/") for k in resumed)
    chex.assert_trees_all_close(resumed, uninterrupted, atol=1e-6, rtol=0)
    for name in ("process_0-of-2.json", "process_1-of-2.json"):  # and the same data-iterator positions
        paths = [w / "checkpoints" / "latest" / str(_STEPS) / "data_iter" / name for w in (run, ref)]
        assert json.loads(paths[0].read_text()) == json.loads(paths[1].read_text())
