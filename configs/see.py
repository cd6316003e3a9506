"""MCO-E Net on SEE (paper 2, Appendix A.6): RGB + event single-eye expression recognition.

Run::

    python -m fer_jax.train --config configs/see.py --workdir runs/see \\
        --config.data.dir=/data/see_shards --config.model.backbone_weights=/weights/resnet18

Paper settings: AdamW lr 3e-4, weight decay 1e-3, batch 64, 200 epochs, m = 2 frames per modality,
B = 3 event channels (SEE's JPEG event frames), N_e = 8 experts, top-k = 2, loss CE + orthogonal
router loss (lambda = ``model.orthogonal_weight`` = 1). The paper does not give a schedule: constant lr.
Input 100x100 as the authors' code. ``configs/see_reference.py`` reproduces the official code instead.

Model fields (``config.model``), all read by ``fer_jax.models.mco_e_net.from_config``:
``modalities`` ("rgb+event" | "rgb" | "event"; one modality ignores the other input), ``event_channels``,
``tokenization`` ("spatial" | "reference"), ``token_width``, ``d_model``, ``d_state``, ``expand``,
``dt_rank``, ``scan_method``, ``use_mamba``, ``mamba_residual``, ``mjos.{mode, params, source, tied,
bias}``, ``fusion`` ("mcib" | "add"), ``mcib.{num_heads, gate_on, residual}``, ``neck`` ("none" |
"flatten"), ``neck_dim``, ``neck_dropout``, ``head`` ("moe" | "fc" | "mlp"), ``mlp_hidden``,
``moe.{num_experts, top_k, expert_types, router_hidden, router_heads, attention_heads, deep_depth,
deep_dropout, deep_res_coef, focal_hidden}``, ``orthogonal_weight``, ``backbone_weights`` (a directory
written by ``python -m fer_jax.convert``; ``rgb_backbone_weights`` / ``event_backbone_weights`` per
branch).

Ablations: each row of the paper's tables is the override below (``--config.<key>=<value>``; the same
table is ``ABLATIONS`` in this file, which tests/test_see_configs.py builds and runs row by row; the
readings are explained in docs/ablations.md).

Table 2 (components)
  A  RGB only                      model.modalities=rgb
  B  Event only                    model.modalities=event
  C  w/o MCO-Mamba                 model.use_mamba=False model.fusion=add
  D  MCO-Mamba w/o MJOS            model.use_mamba=False
  E  MCO-Mamba w/o MCIB            model.fusion=add
  F  w/o HCE-MoE                   model.head=fc
  G  HCE-MoE, 1 type of expert     model.moe.expert_types=focal
  H  HCE-MoE, 2 types of experts   model.moe.expert_types=deep,attention
  I  Ours                          (defaults)
Table 5 (number of experts)
  A  N_e = 5                       model.moe.num_experts=5
  B  N_e = 10                      model.moe.num_experts=10
  C  N_e = 15                      model.moe.num_experts=15
  D  Ours (N_e = 8)                (defaults)
Table 6 (top-k)
  A  k = 1                         model.moe.top_k=1
  B  k = 3                         model.moe.top_k=3
  C  k = 5                         model.moe.top_k=5
  D  Ours (k = 2)                  (defaults)
Table 7 (SSM parameters that interact in MCO-Mamba)
  A  share A only                  model.mjos.mode=share model.mjos.params=A
  B  share B only                  model.mjos.mode=share model.mjos.params=B
  C  share C only                  model.mjos.mode=share model.mjos.params=C
  D  share D only                  model.mjos.mode=share model.mjos.params=D
  E  M on (A, B)                   model.mjos.params=AB
  F  M on (A, C)                   model.mjos.params=AC
  G  M on (A, D)                   model.mjos.params=AD
  H  M on (B, D)                   model.mjos.params=BD
  I  M on (C, D)                   model.mjos.params=CD
  J  exchange all (A, B, C, D)     model.mjos.mode=exchange model.mjos.params=ABCD
  K  Ours, M on (B, C)             (defaults)
Table 8 (router / expert structure)
  A  MLP instead of HCE-MoE        model.head=mlp
  B  Deep experts only             model.moe.expert_types=deep
  C  Attention experts only        model.moe.expert_types=attention
  D  Focal experts only            model.moe.expert_types=focal
  E  Ours                          (defaults)
"""

from __future__ import annotations

import ml_collections

from configs import common

# (table, row) -> overrides of config.model, dotted keys as on the command line (docstring above)
ABLATIONS: dict[str, dict[str, object]] = {
    "table2_A": {"modalities": "rgb"},
    "table2_B": {"modalities": "event"},
    "table2_C": {"use_mamba": False, "fusion": "add"},
    "table2_D": {"use_mamba": False},
    "table2_E": {"fusion": "add"},
    "table2_F": {"head": "fc"},
    "table2_G": {"moe.expert_types": "focal"},
    "table2_H": {"moe.expert_types": "deep,attention"},
    "table2_I": {},
    "table5_A": {"moe.num_experts": 5},
    "table5_B": {"moe.num_experts": 10},
    "table5_C": {"moe.num_experts": 15},
    "table5_D": {},
    "table6_A": {"moe.top_k": 1},
    "table6_B": {"moe.top_k": 3},
    "table6_C": {"moe.top_k": 5},
    "table6_D": {},
    "table7_A": {"mjos.mode": "share", "mjos.params": "A"},
    "table7_B": {"mjos.mode": "share", "mjos.params": "B"},
    "table7_C": {"mjos.mode": "share", "mjos.params": "C"},
    "table7_D": {"mjos.mode": "share", "mjos.params": "D"},
    "table7_E": {"mjos.params": "AB"},
    "table7_F": {"mjos.params": "AC"},
    "table7_G": {"mjos.params": "AD"},
    "table7_H": {"mjos.params": "BD"},
    "table7_I": {"mjos.params": "CD"},
    "table7_J": {"mjos.mode": "exchange", "mjos.params": "ABCD"},
    "table7_K": {},
    "table8_A": {"head": "mlp"},
    "table8_B": {"moe.expert_types": "deep"},
    "table8_C": {"moe.expert_types": "attention"},
    "table8_D": {"moe.expert_types": "focal"},
    "table8_E": {},
}


def apply_ablation(config: ml_collections.ConfigDict, row: str) -> ml_collections.ConfigDict:
    """Applies ``ABLATIONS[row]`` to ``config.model`` in place and returns the config."""
    if row not in ABLATIONS:
        raise ValueError(f"unknown ablation {row!r}; known: {', '.join(ABLATIONS)}")
    for key, value in ABLATIONS[row].items():
        node = config.model
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def model_config() -> ml_collections.ConfigDict:
    """The paper's MCO-E Net (``config.model``)."""
    m = ml_collections.ConfigDict()
    m.name = "mco_e_net"
    m.num_classes = 7
    m.modalities = "rgb+event"
    m.event_channels = 3  # B; SEE's event frames are 3-channel JPEGs
    m.tokenization = "spatial"
    m.token_width = 4  # reference tokenisation: 2000 logits -> 500 tokens of width 4
    m.d_model = 128  # the paper gives no width; 4 x 4 x m = 32 tokens of 128
    m.d_state = 16
    m.expand = 2
    m.dt_rank = "auto"
    m.scan_method = "auto"
    m.use_mamba = True
    m.mamba_residual = True  # tokens + MCO-Mamba output, as the official code
    m.mjos = ml_collections.ConfigDict()
    m.mjos.mode = "fuse"  # fuse | share | exchange | none
    m.mjos.params = "BC"  # Table 7 row K
    m.mjos.source = "param"  # param (eq. 5) | x_dbl (official code)
    m.mjos.tied = False  # one projection added to both modalities (official code)
    m.mjos.bias = True  # the b of eq. 5
    m.fusion = "mcib"  # mcib | add
    m.mcib = ml_collections.ConfigDict()
    m.mcib.num_heads = 2
    m.mcib.gate_on = "input"  # eq. 8 on the inputs; "projected" as the official code
    m.mcib.residual = False  # official code adds (p_rgb + p_event) / 2
    m.neck = "none"  # none | flatten (official: Linear(tokens*d -> neck_dim) + GELU + dropout)
    m.neck_dim = 1024
    m.neck_dropout = 0.5
    m.head = "moe"  # moe | fc | mlp
    m.mlp_hidden = 512
    m.moe = ml_collections.ConfigDict()
    m.moe.num_experts = 8
    m.moe.top_k = 2
    m.moe.expert_types = "deep,attention,focal"  # assigned cyclically to the experts
    m.moe.router_hidden = 512  # official MLP 1024-512-8
    m.moe.router_heads = 4
    m.moe.attention_heads = 2
    m.moe.deep_depth = 5  # L; official code
    m.moe.deep_dropout = 0.5
    m.moe.deep_res_coef = 1.0  # plain residual; the official code learns one from 0.3
    m.moe.focal_hidden = 512
    m.orthogonal_weight = 1.0  # lambda of eq. 17
    m.backbone_width = 64  # ResNet-18 first-stage channels; 64 = torchvision (the only width weights fit)
    m.backbone_weights = ""
    m.rgb_backbone_weights = ""
    m.event_backbone_weights = ""
    return m


def get_config() -> ml_collections.ConfigDict:
    c = common.base_config()
    c.data.dataset = "see"
    c.data.num_frames = 2  # m
    c.data.image_size = 100
    c.model = model_config()
    c.train.batch_size = 64
    c.train.num_epochs = 200
    # 25 steps per epoch (1,638 training sequences at batch 64): evaluate each epoch (the early-stopping
    # and best-checkpoint signal), write the resumable `latest` checkpoint only every 40 epochs
    c.train.checkpoint_every_steps = 1000
    c.train.require_weights = True  # ImageNet ResNet-18 branches: an empty backbone_weights stops the run
    c.optim.name = "adamw"
    c.optim.lr = 3e-4
    c.optim.weight_decay = 1e-3
    # the rest is base_config()'s plain recipe, which the paper's text matches: no schedule given (constant
    # lr), no EMA, no clipping, no early stopping, unweighted CE (+ the orthogonal loss, in the model)
    c.eval.batch_size = 64
    # the paper lists no training augmentation for SEE and the official code uses none (MambaFER's list
    # is base_config's default; at demo size it cost UAR 0.61 -> 0.47)
    c.data.augment = False
    return c
