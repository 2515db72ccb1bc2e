"""The compiled model: the object that travels from the front end through passes to backends."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx_graphsurgeon as gs

from vitc.core.io import as_tensor


BLOCKS_SCHEMA = "vitc.blocks/2"


@dataclass
class Projection:
    matmul: str
    add: str | None
    weight: str          # initializer name, [K, N]
    bias: str | None
    in_features: int
    out_features: int


@dataclass
class EncoderBlock:
    index: int
    num_heads: int
    head_dim: int
    embed_dim: int
    tokens: int                  # query tokens N (for a symbolic sequence: the count the probe ran with)
    tokens_dynamic: bool         # the exported graph leaves the sequence length symbolic
    pre_ln: bool
    x_in: str                    # input of the q/k/v projections (normalised block input)
    block_input: str | None      # residual partner of the attention branch
    q_proj: Projection
    k_proj: Projection
    v_proj: Projection
    attention: str               # the ai.vitc core node
    attention_output_core: str   # core output [B, N, C] (input of out_proj)
    out_proj: Projection
    attn_output: str             # out_proj output, pre-residual [B, N, C]
    residual: str | None         # the residual Add node (None if fused, e.g. SkipLayerNormalization)
    norm1: str | None
    norm2: str | None
    mlp_fc1: str | None
    mlp_fc2: str | None
    block_output: str | None
    forms: dict[str, str] = field(default_factory=dict)
    has_mask: bool = False
    probe_rel_error: float = 0.0
    reuses: int | None = None    # set by the reuse pass: this block's attention is gone, it adds TB(A_reuses)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttentionCore:
    """An attention site rewritten to a canonical core without a canonical encoder block around
    it: softmax attention as ``ai.vitc::Attention`` over ``groups`` independent batch × head ×
    window groups (``num_heads = 1``) where q/k/v are not one [B, N, C] projection each (windows,
    RoPE, pooled or downsampled tokens, grouped heads, …) or the output does not go straight to
    a projection; attention already linear in N as ``FactorizedAttention``,
    ``SeparableAttention`` or ``LinearAttention`` (:mod:`vitc.runtime.linear_attention_ops`).
    Passes that need the block (reuse, bilstm, the taylor refit) decline it; numbered after the
    blocks (``index`` ≥ number of blocks)."""
    index: int
    attention: str               # the ai.vitc core node
    heads: int                   # the axis before the token axis (1 for rank-2/3 operands)
    groups: int                  # batch × heads × windows at the probe run
    q_tokens: int
    kv_tokens: int
    head_dim: int                # d_k
    value_dim: int               # d_v
    tokens_dynamic: bool
    scale: float
    bias: str                    # none | key-padding | causal | additive (an N×N term, e.g. relative position)
    kind: str = "softmax"        # softmax (ai.vitc::Attention) | factorized | separable | linear (linear in N)
    forms: dict[str, str] = field(default_factory=dict)
    why_not_block: str = ""      # the encoder-block recogniser's reason
    output: str = ""             # the tensor the core's reshaped output writes (the export's ·V product)
    probe_rel_error: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Unrecognised:
    """An attention-like subgraph the front end found but did not rewrite, and why."""
    anchor: str
    op: str
    reason: str


@dataclass
class PassRecord:
    """What a pass did. ``weights``: trained / fitted / loaded / untrained / none."""
    name: str
    blocks: list[int]
    weights: str = "none"
    fidelity: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)   # extra OUTDIR files (name -> bytes); not in to_dict
    timings: dict[str, float] = field(default_factory=dict)  # wall/CPU seconds; printed, never in OUTDIR files
    sections: dict[str, dict] = field(default_factory=dict)  # report sections (key -> title, tables, figures)

    def to_dict(self) -> dict:
        return {"name": self.name, "blocks": self.blocks, "weights": self.weights,
                "fidelity": self.fidelity, "details": self.details}


@dataclass
class CompiledModel:
    graph: gs.Graph
    opset: int
    name: str
    source: Path | None
    blocks: list[EncoderBlock]
    unrecognised: list[Unrecognised]
    normalized: dict[str, int]
    external_data: bool = False
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    records: list[PassRecord] = field(default_factory=list)
    node_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    original: onnx.ModelProto | None = None   # the normalised original, for calibration runs
    cores: list[AttentionCore] = field(default_factory=list)   # sites without a canonical block
    original_held: dict = field(default_factory=dict)   # data of ``original``'s placeholder initializers

    def original_model(self) -> onnx.ModelProto | None:
        """``original`` with its weights in place (a copy; sessions take ``original`` + ``original_held``)."""
        if self.original is None or not self.original_held:
            return self.original
        full = onnx.ModelProto()
        full.CopyFrom(self.original)
        for t in full.graph.initializer:
            if t.name in self.original_held:
                t.CopyFrom(as_tensor(self.original_held[t.name], t.name))
        return full

    def node(self, name: str) -> gs.Node:
        for n in self.graph.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def tensor(self, name: str) -> gs.Tensor:
        return self.graph.tensors()[name]

    def summary(self) -> dict:
        """``blocks.json``: the recognised blocks, what was not recognised, what was normalised, the passes."""
        return {"schema": BLOCKS_SCHEMA, "model": self.name, "opset": self.opset,
                "blocks": [b.to_dict() for b in self.blocks], "cores": [c.to_dict() for c in self.cores],
                "unrecognised": [u.__dict__ for u in self.unrecognised], "normalized": self.normalized,
                "passes": [r.to_dict() for r in self.records]}

    def tag(self, node_name: str, block: int | None, role: str) -> None:
        """Attach ``vitc.block``/``vitc.role`` metadata to a node (emitted as metadata_props)."""
        meta = {"vitc.role": role}
        if block is not None:
            meta["vitc.block"] = str(block)
        self.node_meta[node_name] = meta
