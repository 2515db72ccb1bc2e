#!/usr/bin/env python3
"""Regenerate the small ONNX exporter fixtures under tests/fixtures/exporters/.

Dev-only tool (needs torch, timm, transformers, onnxscript, onnx, onnxruntime;
none of these are runtime dependencies of vitc).

Every fixture is a tiny transformer (2 encoder blocks, embed 64, 4 heads of 16)
built from a config with seeded random weights -- nothing is downloaded -- and
exported in one distinct, real exporter form (legacy TorchScript exporter,
dynamo exporter, onnxruntime's transformer optimizer), plus a few graph-surgery
variants derived from a natural export with the onnx Python API for forms no
natural export here produces.

Each fixture is checked with onnx.checker, run with onnxruntime
(CPUExecutionProvider) and compared with the torch output. The attention
"forms" written to manifest.json are read off the exported graph by
``describe_attention`` (it walks the operands of every Softmax / fused
attention op); nothing in the manifest's ``forms`` is typed in by hand.

Usage:
    python tools/export_fixtures.py --out tests/fixtures/exporters
    python tools/export_fixtures.py --only timm_legacy_sdpa_op17,hf_bert_eager_legacy_op17
    python tools/export_fixtures.py --inspect some_model.onnx [more.onnx ...]
"""
from __future__ import annotations

import argparse
import copy
import importlib.abc
import importlib.machinery
import io
import json
import math
import os
import sys
import tempfile
import types
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# --------------------------------------------------------------------------- #
# Model geometry (shared by every fixture)
# --------------------------------------------------------------------------- #
DEPTH = 2
EMBED = 64
HEADS = 4
HEAD_DIM = EMBED // HEADS  # 16
MLP_HIDDEN = 96         # ViT MLP hidden (mlp_ratio 1.5: distinct from EMBED, keeps files small)
BERT_INTERMEDIATE = 128
IMG = 32
PATCH = 8
TOKENS_VIT = (IMG // PATCH) ** 2 + 1  # 16 patches + CLS = 17
NUM_CLASSES = 10
BERT_VOCAB = 100
BERT_SEQ = 16
BERT_BATCH = 2
BERT_MAX_POS = 32

SEED = 1234


# --------------------------------------------------------------------------- #
# torchvision shim: timm hard-imports torchvision (transforms, FrozenBatchNorm2d)
# at package import time, but nothing used here needs it. When torchvision is
# not installed (it drags in a matching CUDA torch build) install a permissive
# stub package so that `import timm` succeeds.
# --------------------------------------------------------------------------- #
def install_torchvision_stub() -> None:
    """timm imports torchvision at import time; a CUDA torchvision breaks beside CPU torch, and
    nothing built here needs it: an importable stand-in (any attribute is a class) is enough."""
    try:
        import torchvision  # noqa: F401
        return
    except Exception:  # noqa: BLE001 - missing or broken
        pass

    class _AnyMeta(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            cache = cls.__dict__.get("_children")
            if cache is None:
                cache = {}
                type.__setattr__(cls, "_children", cache)
            if name not in cache:  # distinct class per attribute (enum-like use)
                cache[name] = _AnyMeta(name, (cls,), {"_children": {}})
            return cache[name]

    class _Any(metaclass=_AnyMeta):
        def __init__(self, *a, **k):
            pass

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            m = _StubModule(spec.name)
            m.__path__ = []
            return m

        def exec_module(self, module):
            pass

    for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[k]                 # a broken import leaves half-initialised modules behind
    sys.meta_path.insert(0, _Finder())


# --------------------------------------------------------------------------- #
# Graph inspection (used for the manifest's `forms` and for --inspect)
# --------------------------------------------------------------------------- #
MS = "com.microsoft"


class G:
    """Indexes over one ONNX graph."""

    def __init__(self, model: onnx.ModelProto):
        # Index the caller's protos (surgery edits them in place); shape
        # inference runs on a copy and only feeds `rank`.
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:
            inferred = model
        self.model = model
        g = model.graph
        self.nodes = list(g.node)
        self.prod = {o: n for n in g.node for o in n.output if o}
        self.cons: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.cons.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in g.initializer}
        self.graph_inputs = {i.name for i in g.input}
        self.rank: dict[str, int] = {}
        ig = inferred.graph
        for vi in list(ig.value_info) + list(ig.input) + list(ig.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.rank[vi.name] = len(t.shape.dim)
        for i in g.initializer:
            self.rank[i.name] = len(i.dims)

    def const_value(self, name):
        """numpy value if `name` is a compile-time constant, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        n = self.prod.get(name)
        if n is None:
            return None
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, dtype=np.float32)
                if a.name == "value_floats":
                    return np.array(list(a.floats), dtype=np.float32)
                if a.name == "value_int":
                    return np.array(a.i, dtype=np.int64)
                if a.name == "value_ints":
                    return np.array(list(a.ints), dtype=np.int64)
            return None
        if n.op_type in ("Identity", "Cast") and n.input:
            v = self.const_value(n.input[0])
            return v
        return None

    def is_const(self, name) -> bool:
        return self.const_value(name) is not None


def _attr(n, name, default=None):
    for a in n.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fmt(n, g: G) -> str:
    s = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
    if n.op_type == "Transpose":
        s += str(list(_attr(n, "perm", [])))
    elif n.op_type == "Reshape":
        v = g.const_value(n.input[1])
        s += str(v.tolist()) if v is not None else "(runtime)"
    elif n.op_type in ("Mul", "Div", "Add"):
        consts = [g.const_value(i) for i in n.input]
        for i, v in zip(n.input, consts):
            if v is not None and v.size == 1:
                s += f"({float(v.reshape(-1)[0]):.6g})"
                break
            if v is not None:
                s += f"(const{list(v.shape)}{' all-zero' if not np.any(v) else ''})"
                break
        else:
            if n.op_type != "Add" and all(v is None for v in consts):
                s += "(runtime)"
    elif n.op_type == "Cast":
        s += f"(to={_attr(n, 'to')})"
    return s


_PASS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Mul", "Div", "Cast", "Identity"}


def _data_input(n, g: G) -> str:
    """For a pass-through node, the operand that carries the activation."""
    if n.op_type in ("Mul", "Div", "Add"):
        cands = [i for i in n.input if i and not g.is_const(i)]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            ranks = [g.rank.get(i, -1) for i in cands]
            return cands[int(np.argmax(ranks))]
    return n.input[0]


def _walk_operand(name, g: G):
    """Walk back from a MatMul operand through layout/scale ops.

    Returns (chain of nodes nearest-first, terminal node or None)."""
    chain = []
    while True:
        n = g.prod.get(name)
        if n is None:
            return chain, None
        if n.op_type in _PASS:
            chain.append(n)
            name = _data_input(n, g)
            continue
        return chain, n


def _find_qk(name, g: G, depth=6):
    """From the Softmax input walk back to the Q.K^T MatMul; returns (path, matmul)."""
    path = []
    for _ in range(depth):
        n = g.prod.get(name)
        if n is None:
            return path, None
        if n.op_type == "MatMul" and not any(g.is_const(i) for i in n.input):
            return path, n
        if n.op_type in ("Add", "Mul", "Div", "Cast", "Identity"):
            path.append(n)
            if n.op_type == "Add":
                # follow the operand that leads to a MatMul (the other is the mask)
                nxt = None
                for i in n.input:
                    p = g.prod.get(i)
                    q = p
                    for _ in range(depth):
                        if q is None:
                            break
                        if q.op_type == "MatMul":
                            nxt = i
                            break
                        if q.op_type not in ("Mul", "Div", "Cast", "Identity"):
                            break
                        q = g.prod.get(_data_input(q, g))
                    if nxt:
                        break
                if nxt is None:
                    return path, None
                name = nxt
            else:
                name = _data_input(n, g)
            continue
        return path, None
    return [], None


def _scale_kind(nodes, g: G):
    """('const'|'runtime', op) for the first Mul/Div among nodes, else None."""
    for n in nodes:
        if n.op_type in ("Mul", "Div"):
            other = [i for i in n.input if i != _data_input(n, g)]
            const = all(g.is_const(i) for i in other)
            return ("const" if const else "runtime", n.op_type)
    return None


def describe_attention(model: onnx.ModelProto) -> dict:
    """Read the attention/LN/GELU forms off a graph.

    Returns {"blocks": [per-attention dict], "forms": summary, "ops": [...]}."""
    g = G(model)
    blocks = []
    for n in g.nodes:
        if n.op_type == "Softmax" and n.domain in ("", "ai.onnx"):
            blocks.append(_describe_softmax(n, g))
        elif n.op_type == "Attention" and n.domain in ("", "ai.onnx"):
            blocks.append(_describe_onnx_attention(n, g))
        elif n.op_type == "Attention" and n.domain == MS:
            blocks.append({
                "attention_op": "com.microsoft.Attention", "qkv": "fused-op",
                "scale": "fused-op", "k_transpose": "fused-op",
                "context": f"com.microsoft.Attention(num_heads={_attr(n, 'num_heads')}, "
                           f"inputs={[x for x in n.input]})",
            })
    summary = {}
    for key in ("qkv", "scale", "k_transpose", "attention_op"):
        vals = sorted({str(b.get(key)) for b in blocks})
        summary[key] = vals[0] if len(vals) == 1 else "|".join(vals)
        if summary[key] == "None":
            summary[key] = None
    summary["heads_reshape"] = _heads_reshape_form(g)
    summary["bias_add"] = _bias_add_order(g)
    summary["layernorm"] = _layernorm_form(g)
    summary["gelu"] = _gelu_form(g)
    ops = sorted({(f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                  for n in g.nodes})
    return {"blocks": blocks, "forms": summary, "ops": ops}


def _describe_softmax(sm, g: G) -> dict:
    path, qk = _find_qk(sm.input[0], g)
    d = {"attention_op": None, "qkv": "unknown", "scale": "unknown",
         "k_transpose": "unknown"}
    if qk is None:
        d["context"] = "Softmax with no Q.K^T MatMul found upstream"
        return d
    qchain, qterm = _walk_operand(qk.input[0], g)
    kchain, kterm = _walk_operand(qk.input[1], g)
    vchain, vterm = [], None
    post = []
    o = sm.output[0]
    while True:
        cs = g.cons.get(o, [])
        # dynamo's SDPA decomposition guards the probabilities: Where(IsNaN(p), 0, p)
        guards = [c for c in cs if c.op_type == "IsNaN"]
        main = [c for c in cs if c.op_type != "IsNaN"]
        post.extend(guards)
        if len(main) != 1:
            break
        c = main[0]
        post.append(c)
        if c.op_type == "MatMul":
            vchain, vterm = _walk_operand(c.input[1], g)
            break
        if c.op_type not in ("Cast", "Identity", "Dropout", "Where"):
            break
        o = c.output[0]

    def term_kind(t):
        if t is None:
            return "none"
        return {"Split": "packed-split", "Slice": "packed-slice",
                "Gather": "packed-gather"}.get(t.op_type, "separate")

    kinds = {term_kind(qterm), term_kind(kterm)}
    d["qkv"] = kinds.pop() if len(kinds) == 1 else "mixed"

    qs = _scale_kind(qchain, g)
    ks = _scale_kind(kchain, g)
    ss = _scale_kind([n for n in path if n.op_type in ("Mul", "Div")], g)
    if qs and ks:
        d["scale"] = "q-and-k" if (qs[0], ks[0]) == ("const", "const") else "q-and-k-runtime"
    elif qs:
        d["scale"] = "q-only" if qs[1] == "Mul" else "q-only-div"
    elif ks:
        d["scale"] = "k-only"
    elif ss:
        d["scale"] = "scores-mul" if ss[1] == "Mul" else "scores-div"
        if ss[0] == "runtime":
            d["scale"] += "-runtime"
    else:
        d["scale"] = "none"

    tps = [n for n in kchain if n.op_type == "Transpose"]
    rs = [n for n in kchain if n.op_type == "Reshape"]
    perms = [list(_attr(t, "perm", [])) for t in tps]
    kt = None
    for i, n in enumerate(kchain):
        if (n.op_type == "Transpose" and 0 < i < len(kchain) - 1
                and kchain[i - 1].op_type == "Reshape" and kchain[i + 1].op_type == "Reshape"
                and len(_attr(n, "perm", [])) == 3):
            kt = "reshape-transpose-reshape"
    if kt is None:
        if [0, 1, 3, 2] in perms:
            kt = "transpose-0132"
        elif [0, 2, 3, 1] in perms:
            kt = "transpose-0231"
        elif perms:
            kt = "transpose-" + "|".join("".join(map(str, p)) for p in perms)
        else:
            kt = "none"
    d["k_transpose"] = kt
    d["has_mask_add"] = any(n.op_type == "Add" for n in path)

    def chain_str(chain, term):
        parts = [(_fmt(term, g) if term is not None else "<input>")]
        parts += [_fmt(n, g) for n in reversed(chain)]
        return ">".join(parts)

    d["context"] = (
        f"q: {chain_str(qchain, qterm)} | k: {chain_str(kchain, kterm)} | "
        "scores: MatMul>" + ">".join(_fmt(n, g) for n in reversed(path)) + ">Softmax | "
        f"post: " + ">".join(_fmt(n, g) for n in post) + " | "
        f"v: {chain_str(vchain, vterm)}"
    )
    del rs
    return d


def _describe_onnx_attention(n, g: G) -> dict:
    qchain, qterm = _walk_operand(n.input[0], g)
    kchain, kterm = _walk_operand(n.input[1], g)
    kind = {"Split": "packed-split", "Slice": "packed-slice",
            "Gather": "packed-gather"}.get(qterm.op_type if qterm else "", "separate")
    perms = [list(_attr(t, "perm", [])) for t in kchain if t.op_type == "Transpose"]
    scale = _attr(n, "scale")
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    return {
        "attention_op": "onnx-Attention", "qkv": kind,
        "scale": "fused-op", "k_transpose": "fused-op",
        "context": (f"Attention{attrs} q: " + ">".join(_fmt(x, g) for x in reversed(qchain))
                    + " | k: " + ">".join(_fmt(x, g) for x in reversed(kchain))
                    + f" | k perms {perms} | scale attr {scale}"),
    }


def _heads_reshape_form(g: G) -> str:
    """How the head count appears in the head-split Reshape (projection -> [.., H, d])."""
    kinds = set()
    for n in g.nodes:
        if n.op_type != "Reshape":
            continue
        src = g.prod.get(n.input[0])
        # only projections: MatMul with a constant weight, or its bias Add
        if src is not None and src.op_type == "Add":
            if not any(g.is_const(i) for i in src.input):
                continue
        elif src is None or src.op_type != "MatMul" or not any(g.is_const(i) for i in src.input):
            continue
        shape = g.const_value(n.input[1])
        runtime = False
        if shape is None:
            c = g.prod.get(n.input[1])
            if c is None or c.op_type != "Concat":
                continue
            parts = [g.const_value(i) for i in c.input]
            shape = [int(p.reshape(-1)[0]) if p is not None and p.size == 1 else None for p in parts]
            runtime = True
        else:
            shape = [int(x) for x in shape.reshape(-1)]
        if len(shape) not in (4, 5) or shape[-1] != HEAD_DIM:
            continue
        h = shape[-2]
        k = "minus-one" if h == -1 else "explicit" if h is not None and h > 0 else "unknown"
        kinds.add(k + ("-runtime-shape" if runtime else ""))
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "|".join(sorted(kinds))


def _bias_add_order(g: G) -> str:
    """Operand order of the linear-layer bias Adds (Add of a 1-D constant and a MatMul)."""
    seen = set()
    for n in g.nodes:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        for k, i in enumerate(n.input):
            v = g.const_value(i)
            other = g.prod.get(n.input[1 - k])
            if v is not None and v.ndim == 1 and v.size > 1 and other is not None \
                    and other.op_type == "MatMul":
                seen.add("bias-first" if k == 0 else "bias-second")
    if not seen:
        return "none"
    return seen.pop() if len(seen) == 1 else "mixed"


def _layernorm_form(g: G) -> str:
    ops = Counter((n.domain, n.op_type) for n in g.nodes)
    if ops[(MS, "SkipLayerNormalization")]:
        return "skip-layernorm"
    if ops[("", "LayerNormalization")]:
        return "op"
    if ops[("", "ReduceMean")] and (ops[("", "Pow")] or ops[("", "Mul")]) and ops[("", "Sqrt")]:
        return "decomposed"
    return "none"


def _gelu_form(g: G) -> str:
    ops = Counter((n.domain, n.op_type) for n in g.nodes)
    if ops[(MS, "BiasGelu")]:
        return "biasgelu"
    if ops[(MS, "FastGelu")]:
        return "com.microsoft.FastGelu"
    if ops[(MS, "Gelu")]:
        return "com.microsoft.Gelu"
    if ops[("", "Gelu")]:
        return "op"
    if ops[("", "Erf")]:
        return "erf"
    # tanh approximation: Tanh fed (indirectly) by Pow(x, 3)
    for n in g.nodes:
        if n.op_type == "Pow":
            v = g.const_value(n.input[1])
            if v is not None and v.size == 1 and float(v.reshape(-1)[0]) == 3.0:
                return "tanh"
    return "none"


def print_inspection(path_or_model, label=None) -> dict:
    m = onnx.load(path_or_model) if isinstance(path_or_model, (str, Path)) else path_or_model
    desc = describe_attention(m)
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    print(f"== {label or path_or_model}  opsets={opsets}")
    print("   ops:", Counter(((n.domain + ".") if n.domain else "") + n.op_type for n in m.graph.node))
    for i, b in enumerate(desc["blocks"]):
        print(f"   [attn {i}] qkv={b['qkv']} scale={b['scale']} k_transpose={b['k_transpose']} "
              f"attention_op={b['attention_op']}")
        print(f"       {b['context']}")
    print("   forms:", json.dumps(desc["forms"]))
    return desc


# --------------------------------------------------------------------------- #
# Saving / verification helpers
# --------------------------------------------------------------------------- #
def strip_debug_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop doc strings / metadata_props (dynamo stores stack traces and the
    exported-program signature there); graph semantics are untouched, files
    get ~25% smaller and regeneration is byte-stable."""
    def _strip_graph(graph):
        for n in graph.node:
            n.doc_string = ""
            del n.metadata_props[:]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    _strip_graph(a.g)
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            del vi.metadata_props[:]
            vi.doc_string = ""
        for t in graph.initializer:
            del t.metadata_props[:]
    _strip_graph(model.graph)
    # exported-program signature / range constraints (set order varies run to run)
    del model.graph.metadata_props[:]
    return model


def ort_run(model_or_path, feeds: dict) -> list:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if isinstance(model_or_path, (str, Path)):
        src = str(model_or_path)
    elif isinstance(model_or_path, bytes):
        src = model_or_path
    else:
        src = model_or_path.SerializeToString()
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model: onnx.ModelProto, path: Path | None = None) -> None:
    uses_contrib = any(o.domain == MS for o in model.opset_import)
    target = str(path) if path is not None else model
    try:
        onnx.checker.check_model(target, full_check=not uses_contrib)
    except Exception:
        if not uses_contrib:
            raise
        onnx.checker.check_model(target)


def io_spec(model: onnx.ModelProto) -> dict:
    init_names = {i.name for i in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        t = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out[vi.name] = {"shape": shape,
                        "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))}
    return out


def dynamic_dims(model: onnx.ModelProto) -> list:
    dims = []
    for name, spec in io_spec(model).items():
        for ax, d in enumerate(spec["shape"]):
            if isinstance(d, str):
                dims.append(f"{name}:{ax}")
    return dims


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# --------------------------------------------------------------------------- #
# Model builders
# --------------------------------------------------------------------------- #
def randomize_(model, seed: int):
    """Re-initialise every parameter with seeded values of useful magnitude.

    Default inits (zero biases, unit LN weights, std-0.02 weights) make the
    attention nearly uniform and let wrong bias/LN mappings go unnoticed; they
    also make the legacy exporter deduplicate equal initializers behind
    Identity nodes. Here weights get std 1/sqrt(fan_in), biases N(0, 0.1),
    LN weights 1+N(0, 0.1), embeddings/pos/cls N(0, 0.5)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                v = torch.randn(p.shape, generator=gen) * 0.1
            elif p.dim() == 1:
                v = 1.0 + torch.randn(p.shape, generator=gen) * 0.1
            elif "embed" in name and ("pos" in name or "word" in name or "token_type" in name
                                      or "position" in name) or leaf in ("cls_token", "pos_embed"):
                v = torch.randn(p.shape, generator=gen) * 0.5
            else:
                fan_in = int(np.prod(p.shape[1:]))
                v = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
            p.copy_(v)
    return model


def image_input(batch=1, h=IMG, w=IMG, seed=SEED):
    import torch
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, h, w, generator=gen)


def build_timm(fused_attn=True, dynamic_img_size=False, seed=SEED):
    install_torchvision_stub()
    import torch
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    m = VisionTransformer(img_size=IMG, patch_size=PATCH, in_chans=3, num_classes=NUM_CLASSES,
                          embed_dim=EMBED, depth=DEPTH, num_heads=HEADS,
                          mlp_ratio=MLP_HIDDEN / EMBED, qkv_bias=True,
                          dynamic_img_size=dynamic_img_size)
    randomize_(m, seed)
    for b in m.blocks:
        b.attn.fused_attn = fused_attn
    return m.eval()


def build_hf_vit(attn_impl: str, seed=SEED):
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(seed)
    cfg = ViTConfig(hidden_size=EMBED, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                    intermediate_size=MLP_HIDDEN, image_size=IMG, patch_size=PATCH,
                    num_channels=3, num_labels=NUM_CLASSES, hidden_act="gelu")
    m = ViTForImageClassification._from_config(cfg, attn_implementation=attn_impl)
    randomize_(m, seed)
    m.eval()
    assert m.config._attn_implementation == attn_impl, m.config._attn_implementation
    return m


class _LogitsOnly:
    """Wrap an HF model so that forward returns the logits tensor only."""

    def __new__(cls, model):
        import torch

        class W(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, *args):
                return self.m(*args, return_dict=True).logits
        return W(model).eval()


def build_hf_bert(seed=SEED):
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=BERT_VOCAB, hidden_size=EMBED, num_hidden_layers=DEPTH,
                     num_attention_heads=HEADS, intermediate_size=BERT_INTERMEDIATE,
                     max_position_embeddings=BERT_MAX_POS, type_vocab_size=2, num_labels=2,
                     hidden_act="gelu")
    m = BertForSequenceClassification._from_config(cfg, attn_implementation="eager")
    randomize_(m, seed)
    m.eval()
    assert m.config._attn_implementation == "eager"
    return m


def bert_inputs(batch=BERT_BATCH, seq=BERT_SEQ, seed=SEED):
    import torch
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, BERT_VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if batch > 1:
        mask[1, seq * 3 // 4:] = 0  # padded tail in the second sequence
    tt = torch.zeros(batch, seq, dtype=torch.int64)
    tt[:, seq // 2:] = 1
    return ids, mask, tt


# --------------------------------------------------------------------------- #
# Exporters
# --------------------------------------------------------------------------- #
def export_legacy(model, args, opset, input_names, output_names, dynamic_axes=None):
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def export_dynamo(model, args, opset, input_names, output_names, dynamic_shapes=None):
    import torch
    with tempfile.TemporaryDirectory() as td:
        p = os.path.join(td, "m.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset,
                                     input_names=input_names, output_names=output_names,
                                     dynamic_shapes=dynamic_shapes, verbose=False)
            prog.save(p, external_data=False)
        m = onnx.load(p)
    return strip_debug_info(m)


# --------------------------------------------------------------------------- #
# Surgery (onnx Python API)
# --------------------------------------------------------------------------- #
def _topo_sort(model: onnx.ModelProto) -> None:
    g = model.graph
    avail = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                ordered.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError("graph is not a DAG / has dangling inputs")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def surgery_identity_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """(a) Put every initializer behind an Identity node, as the legacy exporter
    does for deduplicated parameters: init `X.__src` -> Identity -> `X`."""
    m = copy.deepcopy(model)
    g = m.graph
    ids = []
    for t in g.initializer:
        src = t.name + ".__src"
        ids.append(helper.make_node("Identity", [src], [t.name], name=f"/Identity_init/{t.name}"))
        t.name = src
    nodes = ids + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return m


def surgery_scores_div(model: onnx.ModelProto) -> onnx.ModelProto:
    """(d) Move the q-side Mul(q, 1/sqrt(d)) to Div(QK^T, sqrt(d)) on the scores."""
    m = copy.deepcopy(model)
    g = G(m)
    graph = m.graph
    count = 0
    new_nodes = []
    remove = set()
    for sm in [n for n in graph.node if n.op_type == "Softmax"]:
        qk = g.prod[sm.input[0]]
        assert qk.op_type == "MatMul", qk.op_type
        mul = g.prod[qk.input[0]]
        assert mul.op_type == "Mul", mul.op_type
        data = _data_input(mul, g)
        sc = [g.const_value(i) for i in mul.input if i != data][0]
        assert abs(float(sc.reshape(-1)[0]) - HEAD_DIM ** -0.5) < 1e-7, sc
        if len(g.cons[mul.output[0]]) != 1:
            raise RuntimeError("q-scale Mul has other consumers")
        remove.add(id(mul))
        qk.input[0] = data
        sqrt_d = f"{sm.name}/scores_div/sqrt_d"
        new_out = f"{sm.name}/scores_div/out"
        new_nodes.append((qk, helper.make_node(
            "Constant", [], [sqrt_d], name=f"{sm.name}/scores_div/Constant",
            value=numpy_helper.from_array(np.array(math.sqrt(HEAD_DIM), dtype=np.float32)))))
        new_nodes.append((qk, helper.make_node("Div", [qk.output[0], sqrt_d], [new_out],
                                               name=f"{sm.name}/scores_div/Div")))
        sm.input[0] = new_out
        count += 1
    assert count == DEPTH
    nodes = []
    for n in graph.node:
        if id(n) in remove:
            continue
        nodes.append(n)
        for anchor, nn in new_nodes:
            if anchor is n:
                nodes.append(nn)
    del graph.node[:]
    graph.node.extend(nodes)
    # drop now-unused Constant nodes (the old 1/sqrt(d) scalars)
    used = {i for n in graph.node for i in n.input}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    _topo_sort(m)
    return m


def surgery_heads_minus_one(model: onnx.ModelProto) -> onnx.ModelProto:
    """(10) Write the head count as -1 in the q/k/v head-split Reshape shapes."""
    m = copy.deepcopy(model)
    g = G(m)
    count = 0
    for n in m.graph.node:
        if n.op_type != "Reshape":
            continue
        v = g.const_value(n.input[1])
        if v is None or v.ndim != 1:
            continue
        v = v.astype(np.int64)
        # timm packed qkv: [B, N, 3, H, d]; separate: [B, N, H, d]
        if (len(v) == 5 and v[2] == 3 and v[3] == HEADS and v[4] == HEAD_DIM) or \
           (len(v) == 4 and v[2] == HEADS and v[3] == HEAD_DIM):
            if -1 in v.tolist():
                continue
            nv = v.copy()
            nv[-2] = -1
            if len(g.cons[n.input[1]]) != 1:
                raise RuntimeError("shape constant shared")
            cn = g.prod.get(n.input[1])
            if cn is not None and cn.op_type == "Constant":
                for a in cn.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(numpy_helper.from_array(nv, a.t.name))
            else:
                for t in m.graph.initializer:
                    if t.name == n.input[1]:
                        t.CopyFrom(numpy_helper.from_array(nv, t.name))
            count += 1
    assert count == DEPTH, count
    g2 = G(m)  # re-read: the shapes must now carry -1
    n_m1 = sum(1 for n in m.graph.node if n.op_type == "Reshape"
               and -1 in (g2.const_value(n.input[1]) if g2.is_const(n.input[1]) else np.zeros(0)).tolist())
    assert n_m1 >= DEPTH, n_m1
    return m


# --------------------------------------------------------------------------- #
# Fixture definitions
# --------------------------------------------------------------------------- #
VIT_IN = ["pixel_values"]
OUT = ["logits"]


class Ctx:
    def __init__(self, out: Path):
        self.out = out
        self.cache: dict = {}   # name -> (onnx model, feeds, torch reference outputs)
        self.manifest: list = []
        self.failures: list = []


def _vit_meta(**kw):
    d = dict(source="timm", num_blocks=DEPTH, num_heads=HEADS, head_dim=HEAD_DIM,
             embed_dim=EMBED, tokens=TOKENS_VIT, pre_ln=True, has_mask=False,
             expected_rewritable=True)
    d.update(kw)
    return d


def _timm_legacy(name, fused, opset, dynamic=False):
    def make(ctx):
        m = build_timm(fused_attn=fused)
        x = image_input()
        dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
        om = export_legacy(m, (x,), opset, VIT_IN, OUT, dyn)
        extra = []
        if dynamic:
            x3 = image_input(batch=3, seed=SEED + 1)
            extra.append(({"pixel_values": x3.numpy()}, [m(x3).detach().numpy()]))
        return om, {"pixel_values": x.numpy()}, [m(x).detach().numpy()], extra
    return make


def _timm_dynamo(name, fused, opset, dynamic_img=False):
    def make(ctx):
        import torch
        m = build_timm(fused_attn=fused, dynamic_img_size=dynamic_img)
        x = image_input()
        ds = None
        extra = []
        if dynamic_img:
            from torch.export import Dim
            gh, gw = Dim("grid_h", min=1, max=32), Dim("grid_w", min=1, max=32)
            ds = {"x": {0: Dim("batch", min=1, max=64), 2: PATCH * gh, 3: PATCH * gw}}
            for shp, s in (((3, 48, 40), 1), ((2, 16, 24), 2)):
                xe = image_input(batch=shp[0], h=shp[1], w=shp[2], seed=SEED + s)
                extra.append(({"pixel_values": xe.numpy()}, [m(xe).detach().numpy()]))
        with torch.no_grad():
            ref = m(x).numpy()
        om = export_dynamo(m, (x,), opset, VIT_IN, OUT, ds)
        return om, {"pixel_values": x.numpy()}, [ref], extra
    return make


def _hf_vit(impl, exporter, opset):
    def make(ctx):
        import torch
        m = _LogitsOnly(build_hf_vit(impl))
        x = image_input()
        with torch.no_grad():
            ref = m(x).numpy()
        if exporter == "legacy":
            om = export_legacy(m, (x,), opset, VIT_IN, OUT)
        else:
            om = export_dynamo(m, (x,), opset, VIT_IN, OUT)
        return om, {"pixel_values": x.numpy()}, [ref], []
    return make


BERT_IN = ["input_ids", "attention_mask", "token_type_ids"]


def _bert_legacy(ctx):
    import torch
    m = _LogitsOnly(build_hf_bert())
    args = bert_inputs()
    with torch.no_grad():
        ref = m(*args).numpy()
    dyn = {k: {0: "batch", 1: "sequence"} for k in BERT_IN}
    dyn["logits"] = {0: "batch"}
    om = export_legacy(m, args, 17, BERT_IN, OUT, dyn)
    feeds = {k: v.numpy() for k, v in zip(BERT_IN, args)}
    args3 = bert_inputs(batch=3, seq=11, seed=SEED + 1)
    with torch.no_grad():
        ref3 = m(*args3).numpy()
    extra = [({k: v.numpy() for k, v in zip(BERT_IN, args3)}, [ref3])]
    return om, feeds, [ref], extra


def _ort_optimized(ctx, base_key: str, model_type: str):
    """onnxruntime.transformers.optimizer on a cached export (fuses attention for BERT; for ViT only
    LN/GELU, since it does not recognise ViT attention)."""
    from onnxruntime.transformers.optimizer import optimize_model
    base, feeds, ref, extra = ctx.cache[base_key]
    with tempfile.TemporaryDirectory() as td:
        p = os.path.join(td, "model.onnx")
        onnx.save(base, p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimize_model(p, model_type=model_type, num_heads=HEADS, hidden_size=EMBED, opt_level=0)
        stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        print("   ort optimizer fused:", stats)
        q = os.path.join(td, "opt.onnx")
        opt.save_model_to_file(q)  # topological sort + com.microsoft opset import
        om = onnx.load(q)
    return om, feeds, ref, extra


def _bert_ort_optimized(ctx):
    return _ort_optimized(ctx, "hf_bert_eager_legacy_op17", "bert")


def _vit_ort_optimized(ctx):
    return _ort_optimized(ctx, "timm_legacy_sdpa_op17", "vit")


def _surgery(base_name, fn):
    def make(ctx):
        base, feeds, ref, extra = ctx.cache[base_name]
        return fn(base), feeds, ref, extra
    return make


# name -> (builder, manifest metadata)
FIXTURES = [
    ("timm_legacy_sdpa_op17", _timm_legacy("timm_legacy_sdpa_op17", True, 17),
     _vit_meta(exporter="legacy", notes="timm VisionTransformer, fused_attn=True "
               "(F.scaled_dot_product_attention), torch.onnx.export(dynamo=False). "
               "Bias Adds are Add(bias, x).")),
    ("timm_legacy_eager_op14", _timm_legacy("timm_legacy_eager_op14", False, 14),
     _vit_meta(exporter="legacy", notes="timm fused_attn=False: explicit q*scale @ k.transpose(-2,-1), "
               "softmax; opset 14 so LayerNorm is decomposed (ReduceMean/Sub/Pow/Add/Sqrt/Div/Mul/Add).")),
    ("timm_dynamo_sdpa_op18", _timm_dynamo("timm_dynamo_sdpa_op18", True, 18),
     _vit_meta(exporter="dynamo", notes="timm fused_attn=True, torch.onnx.export(dynamo=True). "
               "SDPA decomposed by the exporter; k^T as Reshape>Transpose[0,2,1]>Reshape; "
               "bias Adds are Add(x, bias).")),
    ("timm_dynamo_sdpa_op23", _timm_dynamo("timm_dynamo_sdpa_op23", True, 23),
     _vit_meta(exporter="dynamo", notes="dynamo exporter at opset 23 emits the standard ONNX "
               "Attention op (q/k/v in [B,H,N,d], scale attribute) and the Gelu op.")),
    ("timm_dynamo_eager_op20", _timm_dynamo("timm_dynamo_eager_op20", False, 20),
     _vit_meta(exporter="dynamo", notes="timm fused_attn=False via dynamo at opset 20: explicit "
               "attention (no Attention op below opset 23) with GELU as the standard Gelu op "
               "(surgery variant (f) not needed).")),
    ("timm_legacy_sdpa_op17_dynbatch", _timm_legacy("timm_legacy_sdpa_op17_dynbatch", True, 17, dynamic=True),
     _vit_meta(exporter="legacy", notes="as timm_legacy_sdpa_op17 with dynamic_axes batch; Reshape "
               "shapes are computed at run time from Shape. The legacy exporter cannot make the image "
               "size dynamic for timm (pos-embed resampling uses aten::_upsample_bicubic2d_aa, "
               "unsupported), see timm_dynamo_sdpa_op18_dynimg. Also verified at batch 3.")),
    ("timm_dynamo_sdpa_op18_dynimg", _timm_dynamo("timm_dynamo_sdpa_op18_dynimg", True, 18, dynamic_img=True),
     _vit_meta(exporter="dynamo", notes="timm dynamic_img_size=True, dynamo with dynamic batch, "
               "height=8*grid_h, width=8*grid_w: the token count is dynamic and the pos-embed is "
               "resampled at run time (Resize cubic, antialias). Verified at 3x3x48x40 and 2x3x16x24.")),
    ("hf_vit_eager_legacy_op17", _hf_vit("eager", "legacy", 17),
     _vit_meta(source="transformers", exporter="legacy", notes="transformers ViTForImageClassification, "
               "attn_implementation='eager'; three separate q/k/v projections; heads written as -1 in "
               "the head-split Reshape; k^T folded into one Transpose[0,2,3,1]; a no-op "
               "Cast(to=FLOAT) pair between Softmax and the AV MatMul (softmax(dtype=float32).to()).")),
    ("hf_vit_sdpa_legacy_op17", _hf_vit("sdpa", "legacy", 17),
     _vit_meta(source="transformers", exporter="legacy", notes="transformers ViT, attn_implementation="
               "'sdpa'; scale sqrt(1/sqrt(d)) as a constant on both q and k^T.")),
    ("hf_vit_sdpa_dynamo_op18", _hf_vit("sdpa", "dynamo", 18),
     _vit_meta(source="transformers", exporter="dynamo", notes="transformers ViT, sdpa, dynamo exporter: "
               "separate projections, constant sqrt(1/sqrt d) on q and k^T, k^T as Transpose[0,2,1,3] then "
               "Reshape>Transpose[0,2,1]>Reshape, an all-zero constant additive mask [1,1,17,17] added to "
               "the scores, and a NaN guard Where(IsNaN(p), 0, p) between Softmax and the AV MatMul.")),
    ("hf_bert_eager_legacy_op17", _bert_legacy,
     dict(source="transformers", exporter="legacy", num_blocks=DEPTH, num_heads=HEADS,
          head_dim=HEAD_DIM, embed_dim=EMBED, tokens=BERT_SEQ, pre_ln=False, has_mask=True,
          expected_rewritable=True,
          notes="transformers BertForSequenceClassification (vocab 100, max_pos 32), eager attention, "
                "post-LN; additive mask Where(mask, 0, -3.4e38) added to the scaled scores; dynamic batch "
                "and sequence (Reshape shapes from Shape at run time). Example input: batch 2, seq 16, "
                "second row padded from position 12. Also verified at batch 3, seq 11.")),
    ("hf_bert_ort_optimized", _bert_ort_optimized,
     dict(source="transformers", exporter="ort-optimizer", num_blocks=DEPTH, num_heads=HEADS,
          head_dim=HEAD_DIM, embed_dim=EMBED, tokens=BERT_SEQ, pre_ln=False, has_mask=True,
          expected_rewritable=True,
          notes="hf_bert_eager_legacy_op17 through onnxruntime.transformers.optimizer.optimize_model("
                "model_type='bert', num_heads=4, hidden_size=64, opt_level=0). Contrib ops: "
                "com.microsoft.EmbedLayerNormalization (word+pos+type embeddings + LN, emits mask_index), "
                "com.microsoft.Attention (packed QKV weight [64,192] + bias [192], num_heads=4, "
                "mask_index input), com.microsoft.SkipLayerNormalization, com.microsoft.BiasGelu. "
                "Mappable: weights stay explicit initializers.")),
    ("timm_ort_optimized", _vit_ort_optimized,
     _vit_meta(exporter="ort-optimizer", notes="timm_legacy_sdpa_op17 through onnxruntime's optimizer "
               "(model_type='vit', num_heads=4, hidden_size=64, opt_level=0): residual Add + LayerNorm "
               "fused into com.microsoft.SkipLayerNormalization, fc1 bias + GELU into com.microsoft.BiasGelu, "
               "but attention is NOT fused (the optimizer does not match this SDPA export) and stays "
               "explicit with the run-time q-and-k scale.")),
    ("timm_legacy_eager_op14_heads_m1", _surgery("timm_legacy_eager_op14", surgery_heads_minus_one),
     _vit_meta(source="surgery", exporter="surgery", notes="timm_legacy_eager_op14 with the head count "
               "in the packed qkv Reshape [1,17,3,4,16] rewritten to [1,17,3,-1,16] (no natural timm "
               "export writes -1; HF/BERT exports do, see hf_vit_eager_legacy_op17).")),
    ("surgery_identity_initializers", _surgery("timm_legacy_eager_op14", surgery_identity_initializers),
     _vit_meta(source="surgery", exporter="surgery", notes="(a) timm_legacy_eager_op14 with every "
               "initializer behind an Identity node (init 'X.__src' -> Identity -> 'X'), as the legacy "
               "exporter emits for deduplicated parameters.")),
    ("surgery_scores_div", _surgery("timm_legacy_eager_op14", surgery_scores_div),
     _vit_meta(source="surgery", exporter="surgery", notes="(d) timm_legacy_eager_op14 with the q-side "
               "Mul(q, 0.25) removed and Div(QK^T, 4.0) inserted before the Softmax.")),
]

EXTERNAL = ("timm_legacy_sdpa_op17", "external/timm_legacy_sdpa_op17_external")


def generate(ctx: Ctx, only: set | None) -> None:
    import onnxruntime
    for name, make, meta in FIXTURES:
        base_needed = {"hf_bert_ort_optimized": "hf_bert_eager_legacy_op17",
                       "timm_ort_optimized": "timm_legacy_sdpa_op17"}
        if only and name not in only and not any(
                base_needed.get(o) == name or
                (o.startswith(("surgery_", "timm_legacy_eager_op14_")) and name == "timm_legacy_eager_op14")
                for o in only):
            continue
        print(f"-- {name}")
        try:
            om, feeds, ref, extra = make(ctx)
        except Exception as e:  # record and keep going
            print(f"   FAILED to build/export: {type(e).__name__}: {e}")
            ctx.failures.append((name, repr(e)))
            continue
        ctx.cache[name] = (om, feeds, ref, extra)
        if only and name not in only:
            continue
        path = ctx.out / f"{name}.onnx"
        onnx.save(om, str(path))
        check(om, path)
        outs = ort_run(path, feeds)
        diff = max_abs_diff(outs[0], ref[0])
        diffs = [diff]
        for f2, r2 in extra:
            o2 = ort_run(path, f2)
            diffs.append(max_abs_diff(o2[0], r2[0]))
        print(f"   torch vs ORT max abs diff: {diff:.3g}" +
              (f"  (other shapes: {', '.join(f'{d:.3g}' for d in diffs[1:])})" if extra else ""))
        if max(diffs) > 1e-4:
            ctx.failures.append((name, f"torch vs ORT diff {max(diffs)}"))
        base_diff = None
        if meta.get("source") == "surgery":
            base = ctx.cache["timm_legacy_eager_op14"][0]
            assert base.SerializeToString() != om.SerializeToString(), "surgery changed nothing"
            base_diff = max_abs_diff(outs[0], ort_run(base, feeds)[0])
            print(f"   ORT(surgery) vs ORT(base) max abs diff: {base_diff:.3g}")
        desc = print_inspection(om, label=path.name)
        opset = {o.domain: o.version for o in om.opset_import}.get("", None)
        entry = dict(file=path.name, **{k: v for k, v in meta.items() if k != "notes"})
        entry.update(opset=opset, dynamic_axes=dynamic_dims(om), inputs=io_spec(om),
                     forms=desc["forms"],
                     contrib_ops=sorted(o for o in desc["ops"] if o.startswith(MS)),
                     ops=desc["ops"],
                     attention_context=desc["blocks"][0]["context"] if desc["blocks"] else None,
                     torch_vs_ort_max_abs_diff=max(diffs),
                     **({"ort_vs_base_max_abs_diff": base_diff} if base_diff is not None else {}),
                     notes=meta.get("notes", ""))
        if meta.get("source") == "surgery" or meta.get("exporter") == "ort-optimizer":
            entry["derived_from"] = {"hf_bert_ort_optimized": "hf_bert_eager_legacy_op17.onnx",
                                     "timm_ort_optimized": "timm_legacy_sdpa_op17.onnx"}.get(
                name, "timm_legacy_eager_op14.onnx")
        ctx.manifest.append(entry)

    # One fixture with external data, in its own folder.
    src, dst = EXTERNAL
    if src in ctx.cache and (not only or src in only):
        om = copy.deepcopy(ctx.cache[src][0])
        feeds, ref = ctx.cache[src][1], ctx.cache[src][2]
        ext_dir = ctx.out / Path(dst).parent
        ext_dir.mkdir(parents=True, exist_ok=True)
        fname = Path(dst).name + ".onnx"
        for f in ext_dir.iterdir():
            f.unlink()
        onnx.save(om, str(ext_dir / fname), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=fname + ".data", size_threshold=1024)
        check(om, ext_dir / fname)
        diff = max_abs_diff(ort_run(ext_dir / fname, feeds)[0], ref[0])
        print(f"-- {dst}.onnx (+ .onnx.data)\n   torch vs ORT max abs diff: {diff:.3g}")
        base_entry = next(e for e in ctx.manifest if e["file"] == f"{src}.onnx")
        e = copy.deepcopy(base_entry)
        e.update(file=f"{dst}.onnx", external_data=f"{Path(dst).parent}/{fname}.data",
                 torch_vs_ort_max_abs_diff=diff,
                 notes=f"{src}.onnx saved with onnx.save(save_as_external_data=True, "
                       f"location='{fname}.data', size_threshold=1024): tensors >= 1 KiB live in "
                       f"the .data file, small ones stay inline.")
        ctx.manifest.append(e)

    import timm
    import torch
    import transformers
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "timm": timm.__version__, "transformers": transformers.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import onnxscript
        versions["onnxscript"] = onnxscript.__version__
    except Exception:
        pass
    man_path = ctx.out / "manifest.json"
    if only and man_path.exists():  # merge into the existing manifest
        old = json.loads(man_path.read_text())
        new_files = {e["file"] for e in ctx.manifest}
        keep = [e for e in old.get("fixtures", []) if e["file"] not in new_files]
        ctx.manifest = keep + ctx.manifest
    doc = {
        "generator": "tools/export_fixtures.py",
        "versions": versions,
        "geometry": {"num_blocks": DEPTH, "embed_dim": EMBED, "num_heads": HEADS,
                     "head_dim": HEAD_DIM, "vit_mlp_hidden": MLP_HIDDEN,
                     "bert_intermediate": BERT_INTERMEDIATE, "image": IMG, "patch": PATCH,
                     "vit_tokens": TOKENS_VIT, "bert_seq": BERT_SEQ, "bert_vocab": BERT_VOCAB},
        "field_notes": {
            "dynamic_axes": "'input:axis' for every graph-input dim that is symbolic",
            "tokens": "token count of the exported example input",
            "forms.qkv": "packed-split | packed-slice | packed-gather | separate | fused-op (inside a contrib op)",
            "forms.scale": "q-and-k (constant sqrt(1/sqrt d) on q and k^T) | q-and-k-runtime (computed "
                           "through Shape>Slice>Cast>Sqrt>Div>Cast>Sqrt) | q-only | scores-mul | scores-div | "
                           "fused-op (attribute/implicit in an attention op)",
            "forms.k_transpose": "transpose-0132 | transpose-0231 | reshape-transpose-reshape | fused-op",
            "forms.heads_reshape": "head count in the head-split Reshape: explicit | minus-one, suffixed -runtime-shape when the shape is a Concat of Shape-derived values | none (fused op)",
            "forms.bias_add": "operand order of linear bias Adds: bias-first = Add(bias, x) | bias-second = Add(x, bias) | none (fused into Gemm/contrib ops)",
            "forms.layernorm": "op | decomposed | skip-layernorm",
            "forms.gelu": "erf | op (ONNX Gelu) | tanh | biasgelu | com.microsoft.Gelu",
            "attention_context": "op chains around the first Softmax/attention op as read from the "
                                 "graph by describe_attention()",
            "skipped_surgery_variants": {
                "b_cast_pair": "natural: hf_vit_eager_legacy_op17 has Softmax>Cast(to=1)>Cast(to=1)>MatMul",
                "c_bias_add_order": "natural both ways: legacy exports emit Add(bias, x), dynamo exports Add(x, bias)",
                "e_k_transpose": "natural: Transpose[0,2,3,1] in hf_vit_eager_legacy_op17 / hf_bert_eager_legacy_op17, "
                                 "Reshape>Transpose[0,2,1]>Reshape in timm_dynamo_sdpa_op18",
                "f_gelu_op": "natural: timm_dynamo_eager_op20 (and timm_dynamo_sdpa_op23)",
            },
        },
        "fixtures": ctx.manifest,
    }
    man_path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {man_path} ({len(ctx.manifest)} fixtures)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/exporters", help="output folder")
    ap.add_argument("--only", default="", help="comma-separated fixture names to (re)generate")
    ap.add_argument("--inspect", nargs="+", metavar="ONNX",
                    help="print the op chains around each Softmax / attention op and exit")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    args = ap.parse_args(argv)

    if args.inspect:
        for p in args.inspect:
            print_inspection(p)
        return 0
    if args.list:
        for name, _, _ in FIXTURES:
            print(name)
        print(EXTERNAL[1])
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    ctx = Ctx(out)
    generate(ctx, only)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"total size of {out}: {total / 1e6:.2f} MB")
    if ctx.failures:
        print("FAILURES:")
        for n, e in ctx.failures:
            print(f"  {n}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
