"""MambaFER on DFEW (paper 1): the paper's training settings.

Run::

    python -m fer_jax.train --config configs/dfew.py --workdir runs/dfew \\
        --config.data.dir=/data/dfew_shards --config.model.backbone_weights=/weights/effv2s

Paper settings: 16 frames per clip at 128x128 (the paper gives no size; its 15.2 G per clip is 16 frames at
128 px, 15.24 GMACs, where 112 px gives 12.49: ``python -m benchmarks.flops``, docs/ablations.md),
EfficientNetV2-S (width/depth 1.0) + facial CBAM + 2 unidirectional Mamba blocks (d_model 1280) + temporal
MHSA + MLP 1280-512-256-128-7; batch 8, up to 200 epochs, AdamW lr 1e-4 / weight decay 0.01, OneCycle,
focal loss (gamma 2) with smoothed inverse-frequency class weights clipped to [0.1, 10], EMA of weights,
early stopping on UAR with patience 20. The paper gives no EMA decay and no clipping: decay 0.999 and
global-norm clipping at 1.0 are this implementation's choices.
``--config.model.backbone_weights=DIR`` loads converted ImageNet weights (``python -m fer_jax.convert``,
docs/reproduce.md); without it the run stops at start (``train.require_weights``) unless
``--config.model.backbone_weights=none`` chooses random initialisation. Ablations are one override away, e.g.
``--config.model.use_cbam=False``, ``--config.model.num_ssm_blocks=0``, ``--config.model.use_mhsa=False``,
``--config.model.bidirectional=True``.
"""

from __future__ import annotations

import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.data.dataset = "dfew"
    c.data.num_frames = 16
    c.data.image_size = 128  # from the paper's FLOPs (15.2 G = 16 x 128 px; 112 px would be 12.5 G)
    # 0: the build's own train / test (data_prep.build --fold K); 1..5: that fold of a --fold all build
    c.data.fold = 0

    m = c.model
    m.name = "mambafer"
    m.num_classes = 7
    m.backbone_width = 1.0
    m.backbone_depth = 1.0
    m.backbone_weights = ""  # directory written by `python -m fer_jax.convert`; "none" = random init
    m.d_model = 1280
    m.num_ssm_blocks = 2
    m.bidirectional = False
    m.d_state = 16
    m.scan_method = "auto"
    m.use_cbam = True
    m.use_region_attention = True
    m.use_landmark_mask = True
    m.use_spatial_attention = True
    m.use_enhancer = True
    m.landmark_sigma = 0.5  # Gaussian landmark heatmaps, in feature-map cells
    m.use_mhsa = True
    m.mhsa_heads = 8
    m.mlp_dims = (512, 256, 128)
    m.dropout = 0.3

    c.train.batch_size = 8
    c.train.num_epochs = 200
    # about 1,170 steps per epoch (a fold's ~9.4k clips at batch 8): save twice per epoch, so a pre-empted
    # Colab loses minutes, not an epoch; evaluations (once per epoch) keep the best
    c.train.checkpoint_every_steps = 500
    c.train.early_stopping_patience = 20  # evaluations (one per epoch) without UAR improvement
    c.train.ema_decay = 0.999  # the paper: "an EMA of weights", no decay given
    c.train.require_weights = True  # the paper starts from ImageNet: an empty backbone_weights stops the run

    c.optim.name = "adamw"
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.01
    c.optim.schedule = "onecycle"
    c.optim.cycle_momentum = True  # PyTorch OneCycleLR's default: Adam's beta1 0.95 -> 0.85 -> 0.95
    c.optim.grad_clip = 1.0  # not in the paper; guards the focal loss's large weighted gradients early on

    c.loss.name = "focal"
    c.loss.gamma = 2.0
    c.loss.class_weights = "inverse_freq"
    c.loss.label_smoothing = 0.0
    c.loss.au_reweight = 0.0  # AU-guided re-weighting strength (paper's option); 0 = off
    return c
