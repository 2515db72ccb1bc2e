"""vitc — compile ONNX Vision Transformers for IMC crossbars and systolic arrays.

The source tree keeps the architecture visible: ``compiler/``, ``passes/``,
``backends/`` and ``runtime/`` live at the repository root and are installed as
``vitc.compiler``, ``vitc.passes``, ``vitc.backends`` and ``vitc.runtime``.
"""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# Running from a source checkout (not installed): let ``vitc.compiler`` resolve to
# ``<repo>/compiler`` by adding the repository root to this package's search path.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(
    _os.path.join(_root, "compiler")
):
    __path__.append(_root)  # type: ignore[name-defined]


def compile(*args, **kwargs):  # noqa: A001 - mirrors the CLI verb
    """See :func:`vitc.pipeline.compile_model`."""
    from vitc.pipeline import compile_model

    return compile_model(*args, **kwargs)


def validate(*args, **kwargs):
    """See :func:`vitc.runtime.validate.validate_models`."""
    from vitc.runtime.validate import validate_models

    return validate_models(*args, **kwargs)


def zoo(*args, **kwargs):
    """See :func:`vitc.compiler.zoo.build_vit`."""
    from vitc.compiler.zoo import build_vit

    return build_vit(*args, **kwargs)
