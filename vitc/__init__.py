"""vitc — compile ONNX Vision Transformers for IMC crossbars and systolic arrays.

The package is laid out by layer (docs/architecture.md): ``vitc.core`` (errors, the IR, file
I/O, hardware descriptions) ← ``vitc.runtime`` (onnxruntime, shapes, ai.vitc ops) ←
``vitc.compiler`` (the front end) ← ``vitc.passes`` ← ``vitc.backends`` ← this package, the
driver (pipeline, CLI, reports).

    import vitc
    res = vitc.compile("deit_small.onnx", out="out", passes="taylor", target="xbar")
"""
from __future__ import annotations

import os as _os

# Running from a source checkout (``python -m pytest`` in the repository puts the checkout's
# ``vitc/`` first on the path, before an installed copy): the layers live at the repository root
# (``core/``, ``compiler/`` ...), so add the root to this package's search path; installed, the
# layers are subpackages already and this does nothing.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "core")):
    __path__.append(_root)  # type: ignore[name-defined]

from vitc.core.version import VERSION as __version__  # noqa: E402 - needs the search path above

# The API's entry points import the whole stack on first use, so that ``import vitc.core``
# (and worker processes that only need a layer) stay light.


def compile(*args, **kwargs):  # noqa: A001 - mirrors the CLI verb
    """See :func:`vitc.pipeline.compile_model`."""
    from vitc.pipeline import compile_model  # lazy: the whole stack (see the module comment)

    return compile_model(*args, **kwargs)


def validate(*args, **kwargs):
    """See :func:`vitc.runtime.validate.validate_models`."""
    from vitc.runtime.validate import validate_models  # lazy: onnxruntime on first use

    return validate_models(*args, **kwargs)


def sweep(model, grid, out, **kwargs):
    """See :func:`vitc.sweep.run_sweep`; returns the results table (a pandas DataFrame)."""
    from vitc.sweep import run_sweep  # lazy: pandas/pyarrow (the sweep extra)

    return run_sweep(model, grid, out, **kwargs).table


def zoo(*args, **kwargs):
    """See :func:`vitc.compiler.zoo.build_vit`."""
    from vitc.compiler.zoo import build_vit  # lazy: the front-end layer on first use

    return build_vit(*args, **kwargs)


__all__ = ["compile", "validate", "sweep", "zoo", "__version__"]
