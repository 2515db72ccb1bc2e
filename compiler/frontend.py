"""Front end: an ONNX file in, a :class:`CompiledModel` in canonical form out."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from vitc.compiler.canonicalize import rewrite_site
from vitc.core.errors import VitcInputError
from vitc.core.graph import weight_input
from vitc.core.io import default_opset, load_model
from vitc.runtime import shapes
from vitc.core.ir import CompiledModel
from vitc.compiler.normalize import normalize
from vitc.compiler.probe import probe_names, resolve
from vitc.compiler.contrib import match_ms_attention
from vitc.compiler.recognize import AttentionSite, NotRecognised, match_onnx_attention, match_softmax
from vitc.core.ir import Unrecognised
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.session import run_with_intermediates

PROBE_SEQ_LEN = 16


def read_model(path: str | os.PathLike, input_shapes: dict | None = None) -> CompiledModel:
    """Load ``path`` and canonicalise it (see :func:`canonicalize_model`)."""
    loaded = load_model(path)
    return canonicalize_model(loaded.model, name=Path(path).name.removesuffix(".onnx"), source=loaded.path,
                              external_data=loaded.external_data, input_shapes=input_shapes)


def _probe(model: onnx.ModelProto, names: list[str], input_shapes: dict | None) -> dict:
    """One onnxruntime run of ``model`` on seeded synthetic inputs exposing ``names``; the model's
    own outputs must be finite (NaN/Inf there means corrupt weights or an unusable graph)."""
    feeds = synthetic_inputs(model, batch=1, seq_len=PROBE_SEQ_LEN, seed=0, shapes=input_shapes)
    outputs = [o.name for o in model.graph.output]
    try:
        values = run_with_intermediates(model, names + outputs, feeds)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise VitcInputError(f"the model does not run in onnxruntime on synthetic inputs: {first}") from None
    bad = [n for n in outputs if values[n].dtype.kind == "f" and not np.isfinite(values[n]).all()]
    if bad:
        raise VitcInputError(f"the model's output {bad[0]!r} is not finite (NaN/Inf) on synthetic inputs; "
                             "the weights or the graph are corrupt")
    return values


def find_sites(graph: gs.Graph) -> tuple[list[AttentionSite], list[Unrecognised]]:
    """All attention sites of ``graph`` in topological order, and the anchors that failed."""
    sites, failed = [], []
    for node in list(graph.nodes):
        try:
            if node.op == "Softmax" and node.domain in ("", "ai.onnx", None):
                sites.append(match_softmax(node))
            elif node.op == "Attention" and node.domain in ("", "ai.onnx", None):
                sites.append(match_onnx_attention(node))
            elif node.op == "Attention" and node.domain == "com.microsoft":
                sites.append(match_ms_attention(node, graph))
            elif node.domain == "com.microsoft" and node.op in ("MultiHeadAttention", "PackedAttention"):
                failed.append(Unrecognised(node.name, f"{node.domain}.{node.op}",
                                           "onnxruntime contrib attention op without a mapping; not rewritable"))
        except NotRecognised as exc:
            failed.append(Unrecognised(node.name, node.op if not node.domain else f"{node.domain}.{node.op}", str(exc)))
    return sites, failed


def _set_shapes(graph: gs.Graph, model: onnx.ModelProto) -> None:
    """Give the graph's tensors the shapes and types inference finds (symbolic dims kept)."""
    try:
        info = shapes.infer(model, symbolic=True)
    except VitcInputError:
        return  # recognition copes without shapes; the probe run is the check
    for t in graph.tensors().values():
        if isinstance(t, gs.Variable) and t.name in info and t.shape is None:
            elem, dims = info[t.name]
            t.shape = dims
            if t.dtype is None and elem:
                t.dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)


def canonicalize_model(model: onnx.ModelProto, *, name: str, source: Path | None = None,
                       external_data: bool = False, input_shapes: dict | None = None) -> CompiledModel:
    """Normalise, recognise every attention site, confirm each numerically, rewrite.

    Raises :class:`VitcInputError` if the graph has no attention at all, or none that can be
    rewritten.
    """
    opset = default_opset(model)
    graph = gs.import_onnx(model)
    _set_shapes(graph, model)
    normalized = normalize(graph)
    sites, failed = find_sites(graph)
    if not sites and not failed:
        raise VitcInputError(f"no attention found in {name}: no Softmax over keys and no Attention op")
    original = gs.export_onnx(graph, do_type_check=False)
    original.ir_version = model.ir_version
    original.opset_import.extend([i for i in model.opset_import if i.domain not in {o.domain for o in original.opset_import}])
    values = _probe(original, [n for s in sites for n in probe_names(s)], input_shapes) if sites else {}
    resolved = []
    for site in sites:
        try:
            resolved.append((site, resolve(site, values)))
        except NotRecognised as exc:
            failed.append(Unrecognised(site.anchor.name, site.anchor.op, str(exc)))
    if not resolved:
        reasons = "; ".join(f"{u.anchor}: {u.reason}" for u in failed[:3])
        raise VitcInputError(f"no rewritable attention in {name} ({len(failed)} attention-like subgraphs "
                             f"not recognised: {reasons})")
    cm = CompiledModel(graph, opset, name, source, [], failed, normalized, external_data,
                       dict(input_shapes or {}), original=original)
    for site, spec in resolved:
        try:
            block = rewrite_site(graph, site, spec, len(cm.blocks))
        except NotRecognised as exc:
            failed.append(Unrecognised(site.anchor.name, site.anchor.op, str(exc)))
            continue
        cm.blocks.append(block)
        _tag_block(cm, block)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    _tag_model_ends(cm)
    return cm


def _tag_block(cm: CompiledModel, b) -> None:
    for role, proj in (("q_proj", b.q_proj), ("k_proj", b.k_proj), ("v_proj", b.v_proj), ("out_proj", b.out_proj)):
        cm.tag(proj.matmul, b.index, role)
        if proj.add:
            cm.tag(proj.add, b.index, role + "_bias")
    for role, node in (("attention", b.attention), ("norm1", b.norm1), ("norm2", b.norm2),
                       ("mlp_fc1", b.mlp_fc1), ("mlp_fc2", b.mlp_fc2), ("residual", b.residual)):
        if node:
            cm.tag(node, b.index, role)


def _tag_model_ends(cm: CompiledModel) -> None:
    """Patch embedding (first Conv / weight MatMul before block 0) and classifier head (last)."""
    tagged = set(cm.node_meta)
    weighted = [n for n in cm.graph.nodes if n.op == "Conv" or weight_input(n) is not None]
    first_block = next((i for i, n in enumerate(weighted) if n.name in tagged), None)
    if first_block:
        for n in weighted[:first_block]:
            cm.tag(n.name, None, "patch_embedding" if n.op == "Conv" else "embed")
    last = max((i for i, n in enumerate(weighted) if n.name in tagged), default=None)
    if last is not None:
        for n in weighted[last + 1:]:
            if n.name not in cm.node_meta:
                cm.tag(n.name, None, "head")
