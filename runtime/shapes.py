"""Tensor shapes: the one place vitc works them out.

* **The input rule** (:func:`concrete_shape`): a symbolic batch axis takes the batch size; the
  C/H/W axes of a 4-D float input (an image) take 3×224×224; any other symbolic axis (a
  sequence) takes the sequence length. ``--input-shape`` overrides replace it per input.
* **Inference** (:func:`infer`): ONNX shape inference with data propagation on a weight-less
  copy of the graph — initializers above :data:`SMALL_INIT` elements become shaped graph
  inputs, so a 350 MB model is never serialised for it. Tensors whose shapes flow through
  run-time ``Shape``/``Expand`` arithmetic that inference cannot follow are, on request,
  found by one onnxruntime run (:func:`resolve_by_running`).
* **Constants** (:func:`static_tensors`): which tensors are known at compile time
  (initializers, ``Constant`` outputs, anything computed only from them, and shape data).

The front end (:func:`infer` with symbolic dims kept), the backends (concrete shapes) and the
non-ideal simulator all use these functions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, shape_inference

from vitc.core.errors import VitcInputError
from vitc.runtime.session import open_session

SMALL_INIT = 4096        # initializers up to this many elements keep their values (shape data)
DEFAULT_IMAGE = (3, 224, 224)  # C, H, W used for images with symbolic sizes (override: --input-shape)


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints, or str/None for symbolic dims
    elem_type: int = onnx.TensorProto.FLOAT


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Graph inputs that are not initializers. Raises on inputs that are not plain tensors."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if not vi.type.HasField("tensor_type"):
            raise VitcInputError(f"graph input '{vi.name}' is not a tensor (sequence/map inputs are not supported)")
        tt = vi.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError, ValueError):
            raise VitcInputError(f"graph input '{vi.name}' has an undefined or unsupported element type "
                                 f"({tt.elem_type})") from None
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, dtype, dims, tt.elem_type))
    return specs


def concrete_shape(spec: InputSpec, batch: int, seq_len: int | None) -> tuple[int, ...]:
    """Fill symbolic dims: axis 0 with ``batch``; C/H/W of a 4-D float image from
    :data:`DEFAULT_IMAGE`; any other symbolic axis (sequence) with ``seq_len``."""
    shape = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == 0:
            shape.append(batch)
        elif len(spec.shape) == 4 and spec.dtype.kind == "f":
            shape.append(DEFAULT_IMAGE[i - 1])
        elif seq_len:
            shape.append(seq_len)
        else:
            raise VitcInputError(
                f"input '{spec.name}' has a symbolic dim {d!r} at axis {i}; give the sequence length (--seq-len) "
                f"or its shape (--input-shape {spec.name}:"
                f"{'x'.join(str(x) if isinstance(x, int) and x > 0 else '?' for x in spec.shape)})")
    return tuple(shape)


def check_overrides(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None) -> None:
    """Every ``--input-shape`` names a model input, has its rank and keeps its static dims."""
    if not overrides:
        return
    specs = {s.name: s for s in input_specs(model)}
    for name, shape in overrides.items():
        spec = specs.get(name)
        if spec is None:
            raise VitcInputError(f"--input-shape names '{name}', which is not a model input "
                                 f"(inputs: {', '.join(specs) or 'none'})")
        if len(shape) != len(spec.shape):
            raise VitcInputError(f"--input-shape {name}: rank {len(shape)} given, the model's input has rank "
                                 f"{len(spec.shape)} ({_fmt(spec.shape)})")
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise VitcInputError(f"--input-shape {name}: axis {axis} is {got}, but the model fixes it at {want} "
                                     f"({_fmt(spec.shape)})")


def _fmt(shape) -> str:
    return "x".join(str(d) if isinstance(d, int) and d > 0 else (str(d) if d else "?") for d in shape)


def concrete_inputs(model: onnx.ModelProto, batch: int = 1, seq_len: int | None = None,
                    overrides: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of every graph input: ``overrides`` as given, else :func:`concrete_shape`."""
    shapes = {}
    for spec in input_specs(model):
        if overrides and spec.name in overrides:
            shapes[spec.name] = tuple(int(d) for d in overrides[spec.name])
        else:
            shapes[spec.name] = concrete_shape(spec, batch, seq_len)
    return shapes


def _dims(t: onnx.TypeProto, symbolic: bool) -> list | None:
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(d.dim_value)
        else:
            out.append((d.dim_param or None) if symbolic else None)
    return out


def weightless(model: onnx.ModelProto, nodes=None, input_shapes: dict | None = None,
               value_info: bool = False) -> onnx.ModelProto:
    """A copy of ``model`` (or of ``nodes`` over its inputs and initializers) in which large
    initializers are shaped graph inputs; inputs take ``input_shapes`` when given."""
    g = model.graph
    if input_shapes is not None:
        elem = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
        inputs = [helper.make_tensor_value_info(n, elem.get(n, onnx.TensorProto.FLOAT), list(d))
                  for n, d in input_shapes.items()]
    else:
        inits = {t.name for t in g.initializer}
        inputs = [vi for vi in g.input if vi.name not in inits]
    small, big = [], []
    for t in g.initializer:
        n = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
        if n <= SMALL_INIT and t.data_location != onnx.TensorProto.EXTERNAL:
            small.append(t)
        else:
            big.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    outputs = list(g.output) if input_shapes is None else [helper.make_value_info(o.name, onnx.TypeProto())
                                                           for o in g.output]
    graph = helper.make_graph(list(g.node) if nodes is None else nodes, g.name or "g", inputs + big, outputs, small,
                              value_info=list(g.value_info) if value_info else None)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    m.functions.extend(model.functions)
    return m


def infer(model: onnx.ModelProto, input_shapes: dict | None = None, nodes=None,
          symbolic: bool = False) -> dict[str, tuple[int, list | None]]:
    """Tensor name → (elem type, dims) by shape inference on a weight-less copy.

    ``input_shapes``: concrete input shapes (else the model's own, symbolic dims kept);
    ``nodes``: infer over these nodes instead of the graph's (e.g. functions expanded);
    ``symbolic``: keep dim_param names (else unknown dims are None).
    """
    m = weightless(model, nodes, input_shapes)
    try:
        inferred = shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise VitcInputError(f"shape inference failed: {first}") from None
    info = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        d = _dims(vi.type, symbolic)
        if d is not None:
            info[vi.name] = (vi.type.tensor_type.elem_type, d)
    for t in model.graph.initializer:
        info[t.name] = (t.data_type, list(t.dims))
    return info


def resolve_by_running(model: onnx.ModelProto, nodes, feeds: dict[str, np.ndarray], info: dict,
                       wanted: list[str]) -> str | None:
    """Fill ``info`` for ``wanted`` tensors by one onnxruntime run of ``nodes`` on ``feeds``.
    Returns a warning when the graph cannot be run (costing goes on without those shapes)."""
    if not wanted:
        return None
    g = model.graph
    graph = helper.make_graph(nodes, g.name or "g", list(g.input),
                              [helper.make_empty_tensor_value_info(t) for t in wanted], list(g.initializer))
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    m.functions.extend(model.functions)
    try:
        values = open_session(m, prepack=False, zeros=True).run(wanted, feeds)   # shapes only: weights as zeros
    except Exception as e:  # noqa: BLE001 - best effort; costing proceeds with what is known
        return (f"shapes of {len(wanted)} tensors unknown and the graph could not be run to find them "
                f"({type(e).__name__})")
    for t, v in zip(wanted, values):
        info[t] = (info.get(t, (helper.np_dtype_to_tensor_dtype(v.dtype), None))[0], list(v.shape))
    return None


_NOT_FOLDED = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")


def static_tensors(nodes, initializers) -> set[str]:
    """Names of tensors known at compile time: ``initializers``, ``Constant`` outputs, outputs of
    nodes whose inputs are all static (random ops excepted), and ``Shape``/``Size`` outputs
    (shape data, fixed once input shapes are). ``nodes`` in topological order."""
    static = set(initializers)
    for n in nodes:
        ins = [t for t in n.input if t]
        if n.op_type == "Constant" or n.op_type in ("Shape", "Size") or (
                ins and all(t in static for t in ins) and n.op_type not in _NOT_FOLDED):
            static.update(n.output)
    return static


def tensor_limit_bytes() -> int:
    """The largest single tensor vitc will ask onnxruntime to allocate: a quarter of physical memory
    (at most 16 GiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(16 << 30, total // 4))


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def check_sizes(model: onnx.ModelProto, overrides: dict | None, batch: int = 1, seq_len: int | None = None,
                probe_seq_len: int = 16) -> None:
    """Refuse, before allocating, inputs or activations too large to run here (one line naming the
    tensor, its shape and size): the inputs at the sizes vitc would run them, and every tensor
    shape inference can size."""
    limit = tensor_limit_bytes()
    try:
        concrete = concrete_inputs(model, batch, seq_len or probe_seq_len, overrides)
    except VitcInputError:
        return                      # symbolic dims without a rule: reported where they are used
    itemsize = {s.name: s.dtype.itemsize for s in input_specs(model)}
    for name, shp in concrete.items():
        n = int(np.prod(shp, dtype=np.float64)) * itemsize.get(name, 4)
        if n > limit:
            raise VitcInputError(f"input '{name}' of shape {_fmt(shp)} would take {_gib(n)}; this machine allows "
                                 f"{_gib(limit)} per tensor (give a smaller --input-shape)")
    try:
        info = infer(model, concrete)
    except VitcInputError:
        return                      # the front end reports inference trouble itself
    worst = (0.0, "", None)
    for name, (elem, dims) in info.items():
        if not dims or any(d is None for d in dims):
            continue
        try:
            size = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize if elem else 4
        except (KeyError, TypeError, ValueError):
            size = 4
        n = float(np.prod(dims, dtype=np.float64)) * size
        if n > worst[0]:
            worst = (n, name, dims)
    if worst[0] > limit:
        raise VitcInputError(f"tensor '{worst[1]}' of shape {_fmt(worst[2])} would take {_gib(worst[0])} at these "
                             f"input sizes; this machine allows {_gib(limit)} per tensor")


def parse_shape_overrides(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["input:1x3x224x224"]`` → {"input": (1, 3, 224, 224)}."""
    out = {}
    for item in items or []:
        name, _, dims = item.rpartition(":")
        try:
            out[name] = tuple(int(x) for x in dims.lower().split("x"))
        except ValueError:
            raise VitcInputError(f"bad --input-shape '{item}' (expected NAME:1x3x224x224)") from None
        if not name or any(x <= 0 for x in out[name]):
            raise VitcInputError(f"bad --input-shape '{item}' (expected NAME:1x3x224x224)")
    return out


__all__ = ["InputSpec", "input_specs", "concrete_shape", "concrete_inputs", "check_overrides", "infer",
           "resolve_by_running", "static_tensors", "weightless", "DEFAULT_IMAGE", "SMALL_INIT", "parse_shape_overrides",
           "check_sizes", "tensor_limit_bytes"]
