"""The authors' aspect-preserving ``transforms.Resize(N)`` for SEE (``data_prep.build --resize shorter``):
torchvision's output size, PIL's bilinear pixels, the manifest's height and width, old square manifests,
and the reference variant trained, evaluated and served on non-square frames.

The synthetic SEE frames are 128x96 (W x H, DAVIS346's 4:3), so the shorter side 100 gives H = 100 and
W = int(100 * 128 / 96) = 133, the shape torchvision gives the real 346x260 frames too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from shard_support import records_by_id

from configs import see_reference
from data_prep import build
from data_prep.synth import see as synth_see
from fer_jax.data import pipeline
from fer_jax.data.info import DataInfo
from fer_jax.data.manifest import load_manifest
from fer_jax.data.schema import decode_frames
from fer_jax.models import registry
from fer_jax.preprocess.resize import resize_pil_bilinear, shorter_side_hw
from fer_jax.preprocess.video import decode_image, list_frame_files

SRC_W, SRC_H = synth_see.WIDTH, synth_see.HEIGHT  # 128 x 96


def _raw_see(root, num_seqs: int, max_frames: int):
    plan = synth_see.plan_sequences(num_seqs, seed=1)
    for i, it in enumerate(plan):
        it["num_frames"] = min(it["num_frames"], max_frames)
        it["subset"] = "testing" if i % 3 == 2 else "training"  # both splits at any size
    for it in plan:
        synth_see.write_sequence(root, it, raw_events=False)
    synth_see.write_index(root, plan, {"kind": "see", "clips": len(plan), "seed": 1, "tiny": True})
    return root


def _build(raw, out, *extra: str) -> int:
    return build.main(["--dataset", "see", "--root", str(raw), "--out", str(out), "--workers", "1", "--quiet",
                       *extra])  # fmt: skip


@pytest.fixture(scope="module")
def raw7(tmp_path_factory):
    """7 sequences (one per class) of at most 13 frames, JPEG frames and event frames only."""
    return _raw_see(tmp_path_factory.mktemp("see_aspect_raw7"), 7, 13)


def test_shorter_side_follows_torchvisions_rule():
    # torchvision: the shorter side becomes n, the longer int(n * long / short) (truncated, not rounded)
    assert shorter_side_hw(260, 346, 100) == (100, 133)  # DAVIS346: 346 * 100 / 260 = 133.08
    assert shorter_side_hw(96, 128, 100) == (100, 133)  # 133.33
    assert shorter_side_hw(96, 128, 32) == (32, 42)  # 42.67 -> 42
    assert shorter_side_hw(346, 260, 100) == (133, 100)  # portrait: the width is the shorter side
    assert shorter_side_hw(50, 50, 100) == (100, 100)
    with pytest.raises(ValueError, match="shorter side"):
        shorter_side_hw(0, 10, 100)


def test_resize_is_pils_bilinear_for_frames_and_voxel_grids():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (SRC_H, SRC_W, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(img).resize((133, 100), Image.BILINEAR))
    np.testing.assert_array_equal(resize_pil_bilinear(img, (100, 133)), want)
    # downscaling: PIL widens the triangle (antialias), which a plain 2-tap bilinear would not
    small = resize_pil_bilinear(img, (24, 32))
    np.testing.assert_array_equal(small, np.asarray(Image.fromarray(img).resize((32, 24), Image.BILINEAR)))
    grid = rng.normal(size=(SRC_H, SRC_W, 2)).astype(np.float32)
    out = resize_pil_bilinear(grid, (24, 32))
    assert out.shape == (24, 32, 2) and out.dtype == np.float32
    ref = np.asarray(Image.fromarray(grid[..., 1], "F").resize((32, 24), Image.BILINEAR))
    np.testing.assert_allclose(out[..., 1], ref, atol=1e-6)
    # a 4x box mean of a smooth image: antialiased, so the mean level is kept
    assert abs(float(out.mean()) - float(grid.mean())) < 0.05


def test_shorter_build_stores_aspect_kept_frames_with_pils_pixels(raw7, tmp_path):
    out = tmp_path / "raw_enc"
    assert (
        _build(raw7, out, "--frames", "0", "--size", "100", "--resize", "shorter", "--encoding", "raw") == 0
    )
    h, w = 100, int(100 * SRC_W / SRC_H)  # shorter side 100, aspect kept: (100, 133)
    m = load_manifest(out)
    prep = m["preprocessing"]
    assert (prep["resize"], prep["size"], prep["height"], prep["width"]) == ("shorter", 100, h, w)
    info = DataInfo.from_manifest(m)
    assert (info.image_size, info.image_height, info.image_width) == (100, h, w)
    recs = {**records_by_id(out, "train"), **records_by_id(out, "test")}
    assert len(recs) == 7
    checked = 0
    for name, rec in sorted(recs.items())[:3]:
        n = int(rec["num_source_frames"])
        assert rec["rgb"].shape == (n, h, w, 3) and rec["event"].shape == (n, h, w, 3)  # --frames 0: all
        folder = next((raw7 / "frame").glob(f"*/{name}"))
        efolder = next((raw7 / "event").glob(f"*/{name}"))
        for k in (0, n - 1):
            src = decode_image(list_frame_files(folder)[k].read_bytes())
            # the same decoded frame through PIL: equal (raw storage, so no JPEG between)
            want = np.asarray(Image.fromarray(src).resize((w, h), Image.BILINEAR))
            np.testing.assert_array_equal(rec["rgb"][k], want)
            esrc = decode_image(list_frame_files(efolder)[k].read_bytes())
            np.testing.assert_array_equal(
                rec["event"][k], Image.fromarray(esrc).resize((w, h), Image.BILINEAR)
            )
            # the authors' whole path (PIL decodes the JPEG too): within one grey level on average
            pil = Image.open(list_frame_files(folder)[k]).convert("RGB").resize((w, h), Image.BILINEAR)
            diff = np.abs(rec["rgb"][k].astype(int) - np.asarray(pil, int))
            assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())
            checked += 1
    assert checked == 6
    # JPEG storage (the default): the decoded frames are within JPEG's error of PIL's resize
    jpg = tmp_path / "jpeg_enc"
    assert _build(raw7, jpg, "--frames", "0", "--size", "100", "--resize", "shorter") == 0
    name, rec = sorted(records_by_id(jpg, "train").items())[0]
    frames = decode_frames(rec["rgb"])
    assert frames.shape[1:] == (h, w, 3)
    src = decode_image(list_frame_files(next((raw7 / "frame").glob(f"*/{name}")))[0].read_bytes())
    want = np.asarray(Image.fromarray(src).resize((w, h), Image.BILINEAR), int)
    assert np.abs(frames[0].astype(int) - want).mean() < 2.0  # quality 95
    # a re-run with the same settings is a finished build: nothing to do
    assert _build(raw7, jpg, "--frames", "0", "--size", "100", "--resize", "shorter") == 0


def test_an_old_square_manifest_still_loads_and_builds_compare(raw7, tmp_path, capsys):
    out = tmp_path / "square"
    assert _build(raw7, out, "--frames", "4", "--size", "32") == 0
    m = load_manifest(out)
    assert (m["preprocessing"]["height"], m["preprocessing"]["width"]) == (32, 32)
    assert "resize" not in m["preprocessing"]  # square builds' settings read as before
    rec = next(iter(records_by_id(out, "train").values()))
    assert decode_frames(rec["rgb"]).shape == (4, 32, 32, 3)
    # a manifest written before height / width existed: square frames of its size
    old = json.loads((out / "manifest.json").read_text())
    for key in ("height", "width"):
        del old["preprocessing"][key]
    (out / "manifest.json").write_text(json.dumps(old))
    info = DataInfo.from_manifest(load_manifest(out))
    assert (info.image_size, info.image_height, info.image_width) == (32, 32, 32)
    capsys.readouterr()
    assert _build(raw7, out, "--frames", "4", "--size", "32") == 0  # still "already built"
    assert "already built" in capsys.readouterr().out
    # the pipeline: a square config reads it; the reference config's 133 width is refused in one line
    c = see_reference.get_config()
    c.data.update(dir=str(out), image_size=32, image_width=0, see_sampling="stride4")
    spec = pipeline._spec(c, load_manifest(out), augment=False)
    assert spec.image_size == 32
    c.data.image_width = 42
    with pytest.raises(ValueError, match=r"image_width = 32 x 42 .* 32 x 32 \(H x W\)") as e:
        pipeline._spec(c, load_manifest(out), augment=False)
    assert "\n" not in str(e.value)
    # other square size: the old message
    c.data.update(image_size=64, image_width=0)
    with pytest.raises(ValueError, match="image_size=64 but the shards hold 32px frames"):
        pipeline._spec(c, load_manifest(out), augment=False)


def test_non_square_frames_refuse_augmentation_and_dfew_refuses_the_option(raw7, tmp_path, capsys):
    c = see_reference.get_config()
    c.data.update(dir="/x", image_size=32, image_width=42, augment=True)
    manifest = {"dataset": "see", "preprocessing": {"frames": 0, "size": 32, "height": 32, "width": 42}}
    with pytest.raises(ValueError, match="augment needs square frames"):
        pipeline._spec(c, manifest, augment=True)
    assert pipeline._spec(c, manifest, augment=False).image_size == 32
    rc = build.main(["--dataset", "dfew", "--root", str(raw7), "--out", str(tmp_path / "d"), "--resize",
                     "shorter", "--landmarks", "template"])  # fmt: skip
    assert rc == 2 and "--resize shorter is for see/dsee" in capsys.readouterr().err


def test_reference_input_spec_is_100_by_133():
    c = see_reference.get_config()
    assert (c.data.image_size, c.data.image_width) == (100, int(100 * 346 / 260))
    spec = registry.input_spec(c)
    assert spec["rgb"][0] == (2, 100, 133, 3) and spec["event"][0] == (2, 100, 133, 3)
    assert registry.dummy_inputs(c, 2)["rgb"].shape == (2, 2, 100, 133, 3)
    c.data.image_width = 0  # the square switch
    assert registry.input_spec(c)["rgb"][0] == (2, 100, 100, 3)


def test_paper_variant_counts_non_square_spatial_tokens():
    from flax import nnx

    from configs import see

    c = see.get_config()
    c.model.update(backbone_width=8, d_model=8, neck_dim=16)
    c.data.image_size, c.data.image_width = 64, 96  # 2 x 3 final maps per frame
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))  # shapes only: no weights drawn
    assert model.num_tokens == c.data.num_frames * 2 * 3
    c.data.image_width = 0
    assert nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0))).num_tokens == c.data.num_frames * 2 * 2


@pytest.mark.slow
@pytest.mark.usefixtures("module_compile_cache", "fast_compile")  # evaluate reuses the run's eval step
def test_reference_variant_trains_evaluates_and_predicts_on_non_square_shards(tmp_path, capsys):
    from fer_jax import predict
    from fer_jax.evaluate import main as evaluate_main
    from fer_jax.training.loop import train
    from fer_jax.training.run import Run

    raw = _raw_see(tmp_path / "raw", 14, 16)
    shards = tmp_path / "shards"
    assert _build(raw, shards, "--frames", "0", "--size", "32", "--resize", "shorter") == 0
    h, w = 32, int(32 * SRC_W / SRC_H)  # (32, 42)
    c = see_reference.get_config()
    c.data.update(dir=str(shards), image_size=h, image_width=w)
    c.model.update(backbone_width=8, backbone_classes=16, neck_dim=32, backbone_weights="none")
    c.model.moe.update(router_hidden=16, focal_hidden=16)
    c.train.update(num_steps=2, num_epochs=0, batch_size=4, log_every_steps=1)
    c.eval.update(batch_size=4, passes=2)
    summary = train(c, tmp_path / "run", progress=False)
    assert summary["status"] == "finished" and summary["step"] == 2
    assert 0.0 <= summary["last_eval"]["uar"] <= 1.0
    batch = next(iter(pipeline.make_eval_iterator(c, "test", batch_size=4)))
    assert batch["rgb"].shape[1:] == (2, h, w, 3) and batch["event"].shape[1:] == (2, h, w, 3)
    capsys.readouterr()
    assert evaluate_main(["--workdir", str(tmp_path / "run"), "--passes", "1", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["uar"] <= 1.0
    # predict builds the record as the builder did (resize shorter, 32 x 42) from a SEE sequence folder;
    # the model call itself is the evaluation's (its batch-1 compile is left out: minutes on 2 cores)
    seq = sorted((raw / "frame").glob("*/*"))[0]
    shutil.copytree(seq, tmp_path / "one" / "frame")
    shutil.copytree(next((raw / "event").glob(f"*/{seq.name}")), tmp_path / "one" / "event")
    run = Run.restore(tmp_path / "run", "latest")
    try:
        assert (run.info.image_height, run.info.image_width) == (h, w)
        record = predict._record(tmp_path / "one", run)
        example = pipeline.prepare_example(record, run.config, run.info.manifest())
    finally:
        run.close()
    assert decode_frames(record["rgb"]).shape == (len(list(seq.iterdir())), h, w, 3)
    assert example["rgb"].shape == example["event"].shape == (2, h, w, 3)


def test_raw_event_voxel_grids_are_resized_like_the_frames():
    # DSEE's raw event streams: voxel grids at the sensor size, then PIL's bilinear to the frames' H x W
    from fer_jax.preprocess import events as ev
    from fer_jax.preprocess.clip import EyeRecordSettings, RawEvents, make_eye_record

    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (SRC_H, SRC_W, 3), dtype=np.uint8) for _ in range(5)]
    n = 400
    events = ev.make_events(np.sort(rng.uniform(0, 5 / 30, n)), rng.integers(0, SRC_W, n),
                            rng.integers(0, SRC_H, n), rng.choice([-1, 1], n))  # fmt: skip
    times = np.arange(1, 6) / 30
    h, w = 24, int(24 * SRC_W / SRC_H)  # (24, 32)
    st = EyeRecordSettings(
        frames=0, size=24, encoding="raw", events="raw", resize="shorter", height=h, width=w
    )
    rec = make_eye_record(rgb, RawEvents(events, times, SRC_H, SRC_W), st)
    assert rec["rgb"].shape == (5, h, w, 3) and rec["event"].shape == (5, h, w, 3)
    grid = ev.events_to_voxel_grid(
        events, num_bins=3, height=SRC_H, width=SRC_W, t_start=times[1], t_end=times[2]
    )
    want = np.asarray(Image.fromarray(grid[1].astype(np.float32), "F").resize((w, h), Image.BILINEAR))
    np.testing.assert_allclose(rec["event"][2][..., 1].astype(np.float32), want, atol=2e-3, rtol=1e-2)
