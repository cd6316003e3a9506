"""Dataset-neutral defaults shared by every training config: ``base_config()``.

Each paper config (``configs/dfew.py``, ``configs/see.py``) derives from it and sets its paper's recipe;
every other config derives from one of those. Nothing here is one paper's choice, so no config has to
undo a default: the training recipe is plain (cross-entropy without class weights, AdamW at optax's
defaults with a constant learning rate, no EMA, no gradient clipping, no early stopping).

Sections: ``data`` (shards and pipeline), ``model`` (filled by each model config), ``train`` (loop),
``optim`` (optax), ``loss``, ``eval``. Every config has ``seed``, ``data.dir``, ``train.batch_size`` and
``train.num_steps`` (total steps; 0 = ``train.num_epochs`` decides), so any run shrinks the same way.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from fer_jax.models.compute import ComputeConfig


def base_config() -> ml_collections.ConfigDict:
    """The shared defaults; ``get_config()`` of a paper config starts from this."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    # the input defaults (DFEW-layout clips) let tests and benchmarks build a config from this one alone;
    # every dataset config states its own dataset, frame count and size
    c.data.dataset = "dfew"  # dfew | see | dsee: decides which keys the batches carry
    c.data.dir = ""  # the shards written by `python -m data_prep.build`
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.num_frames = 16  # frames per clip the model sees (SEE: m frames per modality)
    c.data.stored_frames = 16  # frames per clip the shards keep (`data_prep.build --frames`), >= num_frames
    c.data.image_size = 112
    c.data.num_workers = 0  # grain worker processes
    c.data.augment = True

    c.model = ml_collections.ConfigDict()
    c.model.name = ""
    c.model.num_classes = 7
    # compute settings every model takes (dtype, param_dtype, remat, depthwise_impl), present here so that
    # --config.model.dtype=bfloat16 can override them; their defaults live in ComputeConfig alone
    for field in dataclasses.fields(ComputeConfig):
        c.model[field.name] = field.default

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 8  # GLOBAL batch (all devices / processes); must divide by the device count
    c.train.num_steps = 0  # 0: num_epochs decides
    c.train.num_epochs = 200
    c.train.eval_every_steps = 0  # 0: once per epoch
    c.train.log_every_steps = 10
    c.train.checkpoint_every_steps = 0  # 0: at each evaluation; else every N steps, evaluations aside
    # input and performance hooks (docs/training.md, "Input, prefetch, profiling, compilation cache")
    c.train.normalize_on_device = True  # uint8 frames to the device, normalised in the jitted step
    c.train.prefetch_batches = 2  # batches placed on the device ahead of the step; 0: none
    c.train.stop_check_every_steps = 1  # multi-process: agree on SIGINT/SIGTERM every N steps
    c.train.profile_steps = ""  # off | "N": N steps after the first | "a,b": steps a..b; <workdir>/profile
    c.train.compilation_cache_dir = ""  # JAX's persistent compilation cache there ("" off)
    c.train.keep_checkpoints = 2
    c.train.early_stopping_patience = 0  # evaluations without UAR improvement; 0 disables
    c.train.ema_decay = 0.0  # 0 disables EMA; decay warms up as min(decay, (1+t)/(10+t))
    c.train.grad_accum_steps = 1
    # a start-up check, not a recipe: the paper configs set True (their papers start from ImageNet weights);
    # then an empty model.backbone_weights stops the run, "none" trains from random init on purpose
    c.train.require_weights = False
    c.train.expect_platform = ""  # "" = any; cpu | gpu | tpu: stop at start when JAX's backend is another

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 1e-3  # optax.adamw's defaults
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "constant"  # onecycle | step | cosine | constant
    c.optim.pct_start = 0.3  # onecycle warm-up fraction (PyTorch OneCycleLR default)
    c.optim.step_gamma = 0.94  # step: lr *= gamma every epoch (official MCO-E Net code)
    c.optim.grad_clip = 0.0  # global-norm clipping; 0 disables

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "ce"  # focal | ce
    c.loss.gamma = 2.0  # focal only (Lin et al.'s default)
    c.loss.class_weights = "none"  # inverse_freq | none
    c.loss.label_smoothing = 0.0

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 16  # GLOBAL; the last batch is padded and masked, never dropped
    c.eval.passes = 1  # >1: mean over stochastic passes (official MCO-E Net protocol)
    return c
