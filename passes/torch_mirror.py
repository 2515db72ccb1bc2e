"""A PyTorch mirror of an ONNX graph, for training its weights (optional extra ``vitc[distill]``).

:class:`TorchMirror` runs a model's nodes in order with torch operations, so gradients reach
its initializers; the ones named ``trainable`` are ``nn.Parameter`` s, every other constant a
fixed tensor. vitc owns the op set it needs — the standard ONNX operators its inputs and
rewrites use (ViT/BERT exports after normalisation, the ``ai.vitc`` function bodies once
inlined), and those of :mod:`vitc.passes.torch_mirror_ops` (resampling, convolutional stems,
ONNX ``Attention``, onnxruntime's ``com.microsoft`` fused ops) — rather than converting through
a generic tool; an operator outside that set is a clear error naming it.

Shapes are whatever the run-time tensors have (``Shape`` returns an int64 tensor, ``Reshape``
reads it), so one mirror serves any batch and sequence length. Import this module only where
torch is installed (it imports torch at the top).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from vitc.core.errors import VitcInputError
from vitc.passes.torch_mirror_ops import EXTRA_OPS, MICROSOFT_OPS, ints as _ints

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _reduce(fn):
    def run(a, x, axes=None):
        axes = _ints(axes) if axes is not None else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=[_axis(v, x.dim()) for v in axes], keepdim=keep)
    return run


def _reshape(a, x, shape):
    dims = _ints(shape)
    if not a.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _slice(a, x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    idx = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ax, x.dim())
        n = x.shape[ax]
        if st < 0:            # reversed slices: flip, then slice forwards
            raise VitcInputError("torch mirror: Slice with a negative step is not supported")
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(0, min(n, e + n if e < 0 else e))
        idx[ax] = slice(s, e, st)
    return x[tuple(idx)]


def _split(a, x, split=None, num_outputs=None):
    ax = _axis(a.get("axis", 0), x.dim())
    sizes = _ints(split) if split is not None else a.get("split")
    if sizes is None:
        n = a.get("num_outputs") or num_outputs
        size = math.ceil(x.shape[ax] / n)
        sizes = [size] * (n - 1) + [x.shape[ax] - size * (n - 1)]
    return tuple(torch.split(x, list(sizes), dim=ax))


def _unsqueeze(a, x, axes=None):
    axes = sorted(_axis(v, x.dim() + len(_ints(axes) if axes is not None else a["axes"]))
                  for v in (_ints(axes) if axes is not None else a["axes"]))
    for v in axes:
        x = x.unsqueeze(v)
    return x


def _squeeze(a, x, axes=None):
    axes = _ints(axes) if axes is not None else a.get("axes")
    if axes is None:
        return x.squeeze()
    for v in sorted((_axis(v, x.dim()) for v in axes), reverse=True):
        x = x.squeeze(v)
    return x


def _gemm(a, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


def _conv(a, x, w, b=None):
    nd = w.dim() - 2
    pads = a.get("pads", [0] * 2 * nd)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise VitcInputError("torch mirror: Conv auto_pad SAME_* is not supported")
    if list(pads[:nd]) != list(pads[nd:]):
        x = torch.nn.functional.pad(x, [p for i in reversed(range(nd)) for p in (pads[i], pads[i + nd])])
        pads = [0] * 2 * nd
    fn = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[nd]
    return fn(x, w, b, stride=a.get("strides", [1] * nd), padding=list(pads[:nd]),
              dilation=a.get("dilations", [1] * nd), groups=a.get("group", 1))


def _layernorm(a, x, scale, bias=None):
    ax = _axis(a.get("axis", -1), x.dim())
    dims = list(range(ax, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)) * scale
    return y if bias is None else y + bias


def _softmax(fn):
    def run(a, x):
        return fn(x, dim=_axis(a.get("axis", -1), x.dim()))
    return run


def _constant(a):
    for key, value in a.items():
        if key == "value":
            return torch.from_numpy(np.array(numpy_helper.to_array(value)))
        if key in ("value_float", "value_int"):
            return torch.tensor(value, dtype=torch.float32 if key == "value_float" else torch.int64)
        if key in ("value_floats", "value_ints"):
            return torch.tensor(list(value), dtype=torch.float32 if key == "value_floats" else torch.int64)
    raise VitcInputError("torch mirror: Constant without a supported value")


def _constant_of_shape(a, shape):
    value = a.get("value")
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return torch.full(_ints(shape), fill.reshape(-1)[0].item(), dtype=_DTYPES[helper.np_dtype_to_tensor_dtype(fill.dtype)])


def _clip(a, x, lo=None, hi=None):
    lo = lo if lo is not None else a.get("min")
    hi = hi if hi is not None else a.get("max")
    return torch.clamp(x, min=lo, max=hi)


def _gelu(a, x):
    return torch.nn.functional.gelu(x, approximate="tanh" if a.get("approximate", b"none") in (b"tanh", "tanh") else "none")


def _lstm(a, x, w, r, b=None, seq_lens=None, h0=None, c0=None):
    """ONNX ``LSTM`` (layout 0, gates i, o, f, c; no peepholes, default activations): ``Y``
    [seq, dirs, batch, hidden] (zeros past each ``sequence_lens``), ``Y_h``, ``Y_c`` [dirs, batch, hidden]."""
    if a.get("layout", 0) or a.get("activations") or a.get("clip") or a.get("input_forget"):
        raise VitcInputError("the torch mirror runs the ONNX LSTM with layout 0 and default activations only")
    hid = int(a["hidden_size"])
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs, (seq, batch, _) = w.shape[0], x.shape
    order = torch.cat([torch.arange(k * hid, (k + 1) * hid) for k in (0, 2, 3, 1)])   # ONNX i,o,f,c → torch i,f,g,o
    b = b if b is not None else torch.zeros(dirs, 8 * hid, dtype=x.dtype)
    params = []
    for d in range(dirs):
        params += [w[d][order], r[d][order], b[d, :4 * hid][order], b[d, 4 * hid:][order]]
    lens = (seq_lens.long() if seq_lens is not None else torch.full((batch,), seq, dtype=torch.long))
    if direction == "reverse":    # each sample's real tokens in reverse order (an involution)
        t = torch.arange(seq)[:, None]
        idx = torch.where(t < lens[None, :], lens[None, :] - 1 - t, t)                  # [seq, batch]
        x = torch.gather(x, 0, idx[..., None].expand_as(x))
    h = torch.zeros(dirs, batch, hid, dtype=x.dtype) if h0 is None else h0
    c = torch.zeros(dirs, batch, hid, dtype=x.dtype) if c0 is None else c0
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lens.cpu(), enforce_sorted=False)
    h, c = h[:, packed.sorted_indices], c[:, packed.sorted_indices]
    data, h, c = torch._VF.lstm(packed.data, packed.batch_sizes, (h, c), params, True, 1, 0.0, torch.is_grad_enabled(),
                                direction == "bidirectional")
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(
        torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        total_length=seq)                                                                # [seq, batch, dirs·hid]
    if direction == "reverse":
        y = torch.gather(y, 0, idx[..., None].expand_as(y))
    y = y.reshape(seq, batch, dirs, hid).permute(0, 2, 1, 3)
    return y, h[:, packed.unsorted_indices], c[:, packed.unsorted_indices]


OPS = {
    "Identity": lambda a, x: x, "Dropout": lambda a, x, *r: x,
    "Add": lambda a, x, y: x + y, "Sub": lambda a, x, y: x - y, "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: torch.div(x, y, rounding_mode="trunc") if not x.is_floating_point() else x / y,
    "Pow": lambda a, x, y: torch.pow(x, y), "Sqrt": lambda a, x: torch.sqrt(x), "Exp": lambda a, x: torch.exp(x),
    "Log": lambda a, x: torch.log(x), "Neg": lambda a, x: -x, "Abs": lambda a, x: torch.abs(x),
    "Reciprocal": lambda a, x: 1.0 / x, "Erf": lambda a, x: torch.erf(x), "Tanh": lambda a, x: torch.tanh(x),
    "Sigmoid": lambda a, x: torch.sigmoid(x), "Relu": lambda a, x: torch.relu(x), "Gelu": _gelu,
    "Floor": lambda a, x: torch.floor(x), "Ceil": lambda a, x: torch.ceil(x),
    "Softmax": _softmax(torch.softmax), "LogSoftmax": _softmax(torch.log_softmax),
    "MatMul": lambda a, x, y: x @ y, "Gemm": _gemm, "Conv": _conv, "LayerNormalization": _layernorm,
    "Einsum": lambda a, *xs: torch.einsum(a["equation"].decode() if isinstance(a["equation"], bytes)
                                          else a["equation"], *xs),
    "Reshape": _reshape, "Transpose": lambda a, x: x.permute(*(a.get("perm") or reversed(range(x.dim())))),
    "Flatten": lambda a, x: x.reshape(int(np.prod(x.shape[:_axis(a.get("axis", 1), x.dim())])), -1),
    "Concat": lambda a, *xs: torch.cat(xs, dim=_axis(a["axis"], xs[0].dim())),
    "Split": _split, "Slice": _slice, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Gather": lambda a, x, i: torch.index_select(x, _axis(a.get("axis", 0), x.dim()), i.reshape(-1).long()
                                                 % x.shape[_axis(a.get("axis", 0), x.dim())]).reshape(
        x.shape[:_axis(a.get("axis", 0), x.dim())] + i.shape + x.shape[_axis(a.get("axis", 0), x.dim()) + 1:]),
    "Shape": lambda a, x: torch.tensor(list(x.shape), dtype=torch.int64)[a.get("start", 0):a.get("end")],
    "Size": lambda a, x: torch.tensor(x.numel(), dtype=torch.int64),
    "Cast": lambda a, x: x.to(_DTYPES[a["to"]]), "CastLike": lambda a, x, y: x.to(y.dtype),
    "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Range": lambda a, s, e, d: torch.arange(s.item(), e.item(), d.item(), dtype=s.dtype),
    "Expand": lambda a, x, s: x * torch.ones(_ints(s), dtype=x.dtype) if x.dtype != torch.bool
    else x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(s)))),
    "Tile": lambda a, x, r: x.repeat(*_ints(r)),
    "Where": lambda a, c, x, y: torch.where(c.bool(), x, y),
    "Equal": lambda a, x, y: x == y, "Less": lambda a, x, y: x < y, "Greater": lambda a, x, y: x > y,
    "LessOrEqual": lambda a, x, y: x <= y, "GreaterOrEqual": lambda a, x, y: x >= y,
    "Not": lambda a, x: ~x, "And": lambda a, x, y: x & y, "Or": lambda a, x, y: x | y,
    "Max": lambda a, *xs: torch.stack(torch.broadcast_tensors(*xs)).amax(0),
    "Min": lambda a, *xs: torch.stack(torch.broadcast_tensors(*xs)).amin(0),
    "Sum": lambda a, *xs: sum(xs[1:], xs[0]), "Clip": _clip,
    "ReduceMean": _reduce(torch.mean), "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(lambda x, dim, keepdim: torch.amax(x, dim=dim, keepdim=keepdim)),
    "ReduceMin": _reduce(lambda x, dim, keepdim: torch.amin(x, dim=dim, keepdim=keepdim)),
    "ReduceL2": _reduce(lambda x, dim, keepdim: torch.sqrt((x * x).sum(dim=dim, keepdim=keepdim))),
    "Trilu": lambda a, x, k=None: (torch.triu if a.get("upper", 1) else torch.tril)(x, int(k.item()) if k is not None else 0),
    "CumSum": lambda a, x, ax: torch.cumsum(x, dim=int(ax.item())),
    "LSTM": _lstm,
    **EXTRA_OPS,
}
DOMAINS = {"": OPS, "ai.onnx": OPS, "com.microsoft": MICROSOFT_OPS}


def operator(node: onnx.NodeProto):
    """The torch function of ``node`` (its domain's table), or None."""
    return DOMAINS.get(node.domain, {}).get(node.op_type)


class TorchMirror(torch.nn.Module):
    """``model`` (functions inlined here) as a torch module: ``forward(feeds) -> {output: tensor}``.

    ``weights``: the data of the model's placeholder initializers (name → array); ``trainable``:
    the initializer names that become parameters (``self.named_weights`` maps them back)."""

    def __init__(self, model: onnx.ModelProto, weights: dict | None = None, trainable: set[str] | frozenset = frozenset()):
        super().__init__()
        model = onnx.inliner.inline_local_functions(model)
        weights = weights or {}
        self.params = torch.nn.ParameterList()
        self.named_weights: dict[str, torch.nn.Parameter] = {}
        self.consts: dict[str, torch.Tensor] = {}
        for t in model.graph.initializer:
            held = weights.get(t.name)
            arr = np.array(held if held is not None and not isinstance(held, onnx.TensorProto) else
                           numpy_helper.to_array(held if held is not None else t))
            value = torch.from_numpy(arr)
            if t.name in trainable and arr.dtype.kind == "f":
                p = torch.nn.Parameter(value.float())
                self.params.append(p)
                self.named_weights[t.name] = p
            else:
                self.consts[t.name] = value
        missing = sorted({f"{n.domain + '::' if n.domain not in ('', 'ai.onnx') else ''}{n.op_type}"
                          for n in model.graph.node if operator(n) is None})
        if missing:
            raise VitcInputError(f"the torch mirror has no operator {', '.join(missing)} (needed for trained recovery)")
        self.nodes = [(operator(n), list(n.input), list(n.output), _attrs(n)) for n in model.graph.node]
        self.inputs = [i.name for i in model.graph.input if i.name not in self.consts and i.name not in self.named_weights]
        self.outputs = [o.name for o in model.graph.output]
        first = next((i for i in model.graph.input if i.name in self.inputs), None)
        dim = first.type.tensor_type.shape.dim[0] if first is not None and first.type.tensor_type.shape.dim else None
        # an export with a fixed batch size bakes it into its shape constants: run it in slices of that size
        self.static_batch = dim.dim_value if dim is not None and dim.HasField("dim_value") and dim.dim_value > 0 else None

    def forward(self, feeds: dict[str, torch.Tensor], outputs: list[str] | None = None) -> dict[str, torch.Tensor]:
        b = self.static_batch
        n = len(next(iter(feeds.values()))) if feeds else 0
        if b is None or n == b:
            return self._run(feeds, outputs)
        # slices of the fixed batch size; the last one filled up with its own last sample, then cut
        parts = []
        for start in range(0, n, b):
            idx = torch.arange(start, start + b).clamp_max(n - 1)
            parts.append(self._run({k: v[idx] for k, v in feeds.items()}, outputs))
        keep = n - b * (len(parts) - 1)
        return {k: torch.cat([p[k] for p in parts[:-1]] + [parts[-1][k][:keep]])
                if parts[0][k].dim() and parts[0][k].shape[0] == b else parts[0][k] for k in parts[0]}

    def _run(self, feeds: dict[str, torch.Tensor], outputs: list[str] | None) -> dict[str, torch.Tensor]:
        env = dict(self.consts)
        env.update(self.named_weights)
        env.update(feeds)
        for op, ins, outs, attrs in self.nodes:
            args = [env[i] if i else None for i in ins]
            while args and args[-1] is None:
                args.pop()
            result = op(attrs, *args)
            if isinstance(result, tuple):
                for name, value in zip(outs, result):
                    env[name] = value
            else:
                env[outs[0]] = result
        return {n: env[n] for n in (outputs or self.outputs)}

    def trained_arrays(self) -> dict[str, np.ndarray]:
        """The current values of the trainable initializers."""
        return {n: p.detach().cpu().numpy().astype(np.float32) for n, p in self.named_weights.items()}
