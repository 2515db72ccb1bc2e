"""Front end: an ONNX file in, a :class:`CompiledModel` in canonical form out."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from vitc.compiler.canonicalize import rewrite_site
from vitc.compiler.emit import emit_light, held_weights
from vitc.core.errors import VitcInputError
from vitc.core.graph import attach_mapped, const_value, is_const, is_shape_derived, producer, weight_input
from vitc.core.io import default_opset, load_model
from vitc.runtime import shapes
from vitc.core.ir import CompiledModel
from vitc.compiler.normalize import normalize
from vitc.compiler.probe import TOLERANCE, probe_names, resolve
from vitc.compiler.contrib import match_ms_attention
from vitc.compiler.core_sites import CoreSite, classify_bias, match_core, tag_core_neighbours
from vitc.compiler.linear_sites import match_factorized, match_linear, match_separable
from vitc.compiler.recognize import AttentionSite, NotRecognised, match_onnx_attention, match_softmax
from vitc.core.ir import Unrecognised
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.session import run_with_intermediates

PROBE_SEQ_LEN = 16


def read_model(path: str | os.PathLike, input_shapes: dict | None = None,
               require_rewritable: bool = True) -> CompiledModel:
    """Load ``path`` and canonicalise it (see :func:`canonicalize_model`)."""
    loaded = load_model(path, mapped=True)
    return canonicalize_model(loaded.model, name=Path(path).name.removesuffix(".onnx"), source=loaded.path,
                              external_data=loaded.external_data, input_shapes=input_shapes,
                              require_rewritable=require_rewritable, weights=loaded.weights)


def _probe(model: onnx.ModelProto, names: list[str], input_shapes: dict | None, held: dict | None = None) -> dict:
    """One onnxruntime run of ``model`` on seeded synthetic inputs exposing ``names``; the model's
    own outputs must be finite (NaN/Inf there means corrupt weights or an unusable graph)."""
    feeds = synthetic_inputs(model, batch=1, seq_len=PROBE_SEQ_LEN, seed=0, shapes=input_shapes)
    outputs = [o.name for o in model.graph.output]
    try:
        values = run_with_intermediates(model, names + outputs, feeds, held=held)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise VitcInputError(f"the model does not run in onnxruntime on synthetic inputs: {first}") from None
    bad = [n for n in outputs if values[n].dtype.kind == "f" and not np.isfinite(values[n]).all()]
    if bad:
        raise VitcInputError(f"the model's output {bad[0]!r} is not finite (NaN/Inf) on synthetic inputs; "
                             "the weights or the graph are corrupt")
    return values


def _anchor_kind(node: gs.Node) -> str | None:
    if node.op == "Softmax" and node.domain in ("", "ai.onnx", None):
        return "softmax"
    if node.op == "Attention" and node.domain in ("", "ai.onnx", None):
        return "onnx-attention"
    if node.op == "Attention" and node.domain == "com.microsoft":
        return "ms-attention"
    if node.domain == "com.microsoft" and node.op in ("MultiHeadAttention", "PackedAttention"):
        return "ms-unmapped"
    return None


def _op_label(node: gs.Node) -> str:
    return node.op if not node.domain else f"{node.domain}.{node.op}"


@dataclass
class Found:
    """What recognition found in a graph, before the probe: encoder-block sites, with the
    generic core of each Softmax site as a fallback, cores only, and declines."""
    sites: list[AttentionSite] = field(default_factory=list)
    fallback: dict[str, CoreSite] = field(default_factory=dict)   # anchor name → core, for full sites
    cores: list = field(default_factory=list)                      # CoreSite / LinearSite
    failed: list[Unrecognised] = field(default_factory=list)


def find_sites(graph: gs.Graph, exclude: dict[str, str] | None = None,
               no_block: dict[str, str] | None = None) -> Found:
    """Every attention anchor of ``graph`` in topological order: encoder-block sites (with their
    generic core as a fallback), generic cores (:mod:`vitc.compiler.core_sites`) where the block
    form does not match, and a reason for each anchor that is neither; then activation×activation
    products no site covers (linear attention without a Softmax)."""
    found, exclude, no_block = Found(), exclude or {}, no_block or {}
    for node in list(graph.nodes):
        kind = _anchor_kind(node)
        if kind is None:
            continue
        if node.name in exclude:
            found.failed.append(Unrecognised(node.name, _op_label(node), exclude[node.name]))
            continue
        if kind == "ms-unmapped":
            found.failed.append(Unrecognised(node.name, _op_label(node),
                                             "onnxruntime contrib attention op without a mapping; not rewritable"))
            continue
        try:
            if node.name in no_block:
                raise NotRecognised(no_block[node.name])
            site = {"softmax": match_softmax, "onnx-attention": match_onnx_attention}[kind](node) \
                if kind != "ms-attention" else match_ms_attention(node, graph)
        except NotRecognised as exc:
            block_reason = str(exc)
            site = None
        if kind != "softmax":
            if site is not None:
                found.sites.append(site)
            else:
                found.failed.append(Unrecognised(node.name, _op_label(node), block_reason))
            continue
        try:
            core = match_core(node)
        except NotRecognised as exc:
            if site is not None:
                found.sites.append(site)
                continue
            core = _linear_softmax_site(node, str(exc))
            if core is None:
                found.failed.append(Unrecognised(node.name, node.op, str(exc)))
                continue
        if site is not None:
            found.sites.append(site)
            found.fallback[node.name] = core
        else:
            core.why_not_block = block_reason
            found.cores.append(core)
    found.failed += linear_products(graph, found, exclude)
    return found


def _linear_softmax_site(node: gs.Node, reason: str):
    """The factorised or separable site around a Softmax the softmax-core rule declined."""
    for rule in (match_factorized, match_separable):
        try:
            site = rule(node)
        except (NotRecognised, StopIteration):
            continue
        site.why_not_block = reason
        return site
    return None


def linear_products(graph: gs.Graph, found: Found, exclude: dict[str, str]) -> list[Unrecognised]:
    """Activation×activation MatMuls outside every site, grouped by adjacency: linear attention
    without a Softmax (ReLU/kernel attention such as EfficientViT's LiteMLA, factorised or
    separable attention). Named, not rewritten; the backends cost them as activation products."""
    covered = set()
    for s in found.sites:
        covered.update(id(n) for n in s.walked)
    for c in list(found.cores) + list(found.fallback.values()):
        covered.update(id(n) for n in c.products)
    for u in found.failed:     # the products around a declined Softmax belong to that decline
        node = next((n for n in graph.nodes if n.name == u.anchor), None)
        if node is not None:
            covered.update(id(n) for n in _first_products(node))
    products = [n for n in graph.nodes if n.op == "MatMul" and id(n) not in covered
                and not any(is_const(i) for i in n.inputs[:2])
                and not any(is_shape_derived(i) for i in n.inputs[:2])]
    groups: list[list[gs.Node]] = []
    for n in products:
        near = {id(m) for m in _near(n, 4)}
        g = next((g for g in groups if any(id(m) in near for m in g)), None)
        if g is None:
            groups.append([n])
        else:
            g.append(n)
    out, declined = [], []
    for g in groups:
        site = None
        for n in g:
            try:
                site = match_linear(n)
                break
            except NotRecognised:
                continue
        if site is not None and site.anchor.name in exclude:
            declined.append(Unrecognised(site.anchor.name, "MatMul", exclude[site.anchor.name]))
            g = [n for n in g if all(n is not p for p in site.products)]
        elif site is not None:
            found.cores.append(site)
            g = [n for n in g if all(n is not p for p in site.products)]
        if g:
            out.append(g)
    return [Unrecognised(g[0].name, "MatMul", f"{len(g)} activation×activation product(s) without a Softmax "
                         "(linear attention, e.g. ReLU/kernel attention such as EfficientViT's LiteMLA); "
                         "already linear in the tokens; left as they are and costed as activation products")
            for g in out] + declined


def _first_products(node: gs.Node, limit: int = 24) -> list[gs.Node]:
    """The activation×activation MatMuls first met walking back from ``node``'s input and forward
    from its output (each walk stops at them; at most ``limit`` nodes each way)."""
    found = []
    for forward in (False, True):
        seen, frontier = set(), [node]
        while frontier and len(seen) < limit:
            n = frontier.pop(0)
            nxt = [c for o in n.outputs for c in o.outputs] if forward else \
                [producer(i) for i in n.inputs if producer(i) is not None]
            for m in nxt:
                if id(m) in seen:
                    continue
                seen.add(id(m))
                if m.op == "MatMul" and not any(is_const(i) for i in m.inputs[:2]):
                    found.append(m)
                else:
                    frontier.append(m)
    return found


def _near(node: gs.Node, hops: int) -> list[gs.Node]:
    """Nodes within ``hops`` data edges of ``node`` (either direction)."""
    seen, frontier = {id(node): node}, [node]
    for _ in range(hops):
        nxt = []
        for n in frontier:
            for t in list(n.inputs) + list(n.outputs):
                for m in ([producer(t)] if producer(t) is not None else []) + list(t.outputs):
                    if id(m) not in seen:
                        seen[id(m)] = m
                        nxt.append(m)
        frontier = nxt
    return list(seen.values())


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
                       external_data: bool = False, input_shapes: dict | None = None,
                       require_rewritable: bool = True, exclude: dict[str, str] | None = None,
                       no_block: dict[str, str] | None = None, weights: dict | None = None) -> CompiledModel:
    """Normalise, recognise every attention site, confirm each numerically, rewrite.

    Encoder-block sites become q/k/v projections + ``ai.vitc::Attention``; other softmax
    attention sites become the generic core (:mod:`vitc.compiler.core_sites`), which is re-run
    in onnxruntime against the export (a core that does not reproduce it is declined and the
    model canonicalised again without it). ``weights``: the data of a light ``model``'s
    placeholder initializers (:func:`vitc.core.io.load_model` with ``mapped``). Raises :class:`VitcInputError` if the graph has no
    attention at all or (with ``require_rewritable``) none that can be rewritten.
    """
    opset = default_opset(model)
    graph = gs.import_onnx(model)
    attach_mapped(graph, weights)
    _set_shapes(graph, model)
    normalized = normalize(graph)
    found = find_sites(graph, exclude, no_block)
    failed = list(found.failed)
    if not found.sites and not found.cores and not failed:
        raise VitcInputError(f"no attention found in {name}: no Softmax over keys, no Attention op and no "
                             "activation×activation product")
    with held_weights(graph) as held:        # the input's weights are not copied: placeholders + held
        original = gs.export_onnx(graph, do_type_check=False)
        held = dict(held)
    original.ir_version = model.ir_version
    original.opset_import.extend([i for i in model.opset_import if i.domain not in {o.domain for o in original.opset_import}])
    names = [n for s in found.sites for n in probe_names(s)]
    names += [n for c in list(found.cores) + list(found.fallback.values()) for n in c.probe_names()]
    values = _probe(original, list(dict.fromkeys(names)), input_shapes, held) if names else {}
    resolved, cores = [], list(found.cores)

    def fall_back(site, reason: str) -> None:
        core = found.fallback.get(site.anchor.name)
        if core is None:
            failed.append(Unrecognised(site.anchor.name, _op_label(site.anchor), reason))
        else:
            core.why_not_block = reason
            cores.append(core)
    for site in found.sites:
        try:
            resolved.append((site, resolve(site, values)))
        except NotRecognised as exc:
            fall_back(site, str(exc))
    core_names = {n for c in list(found.cores) + list(found.fallback.values()) for n in c.probe_names()}
    values = {k: v for k, v in values.items() if k in core_names}   # the sites' probe values are spent
    cm = CompiledModel(graph, opset, name, source, [], failed, normalized, external_data,
                       dict(input_shapes or {}), original=original, original_held=held)
    for site, spec in resolved:
        try:
            block = rewrite_site(graph, site, spec, len(cm.blocks))
        except NotRecognised as exc:
            fall_back(site, str(exc))
            continue
        cm.blocks.append(block)
        _tag_block(cm, block)
    biases = {}
    for core in sorted(cores, key=lambda c: _position(graph, c.anchor)):
        index = len(cm.blocks) + len(cm.cores)
        try:
            rec, bias = core.rewrite(graph, values, index)
        except NotRecognised as exc:
            failed.append(Unrecognised(core.anchor.name, core.anchor.op, str(exc)))
            continue
        tag_core_neighbours(cm, core, index)
        rec.forms["anchor"] = core.anchor.name
        cm.cores.append(rec)
        cm.tag(rec.attention, rec.index, "attention")
        if bias is not None:
            biases[rec.index] = bias
    if not cm.blocks and not cm.cores and require_rewritable:
        reasons = "; ".join(f"{u.anchor}: {u.reason}" for u in failed[:3])
        raise VitcInputError(f"no rewritable attention in {name} ({len(failed)} attention-like subgraphs "
                             f"not recognised: {reasons}{'; …' if len(failed) > 3 else ''}; "
                             "`vitc inspect` lists them all)")
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    alive = {n.name for n in graph.nodes}
    kept = {s.anchor.name: "the export still reads the old attention after the block rewrite (a Shape reader "
                           "used outside it); rewritten as a core instead"
            for s, _ in resolved if s.anchor.name in alive and s.kind == "softmax"}
    if kept:
        return canonicalize_model(model, name=name, source=source, external_data=external_data,
                                  input_shapes=input_shapes, require_rewritable=require_rewritable,
                                  exclude=exclude, no_block={**(no_block or {}), **kept}, weights=weights)
    _tag_model_ends(cm)
    if cm.cores:
        wrong = _check_cores(cm, values, biases, input_shapes)
        if wrong:
            return canonicalize_model(model, name=name, source=source, external_data=external_data,
                                      input_shapes=input_shapes, require_rewritable=require_rewritable,
                                      exclude={**(exclude or {}), **wrong}, no_block=no_block, weights=weights)
    return cm


def _position(graph: gs.Graph, node: gs.Node) -> int:
    return next(i for i, n in enumerate(graph.nodes) if n is node)


def _check_cores(cm: CompiledModel, values: dict, biases: dict[int, str], input_shapes) -> dict[str, str]:
    """Run the rewritten graph once; every core must reproduce the export's ·V product (relative
    error ≤ probe.TOLERANCE). Returns {anchor: reason} for those that do not; classifies each
    core's bias (key padding, causal, additive) from its value."""
    rewritten, held = emit_light(cm)
    names = [c.output for c in cm.cores] + sorted(biases.values())
    got = _probe(rewritten, names, input_shapes, held)
    wrong = {}
    for c in cm.cores:
        ref, out = values[c.output].astype(np.float64), got[c.output].astype(np.float64)
        err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12)) if ref.shape == out.shape else np.inf
        c.probe_rel_error = err
        if not err <= TOLERANCE:
            wrong[c.forms["anchor"]] = f"the rewritten core does not reproduce the export (relative error {err:.2e})"
        if c.index in biases:
            c.bias = classify_bias(got[biases[c.index]])
    return wrong


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
