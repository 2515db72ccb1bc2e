"""Pass options as dataclasses: one declaration gives the CLI flags, the ``[passes.<name>]`` table of
``vitc compile --config``, the keys of the Python API's ``options`` dict, and the validation.

    @dataclass(frozen=True)
    class TaylorOptions(PassOptions):
        layers: str | None = option(None, "--taylor-layers", "--layers", metavar="LIST", check=block_list,
                                    help="blocks to linearise: all | 0,2,5 | 0-3")

Every value is parsed and checked (:meth:`PassOptions.build`) before any work starts; a bad one
is one line naming the flag. A flag several passes declare (``--max-drop``) sets every one of
those fields.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

from vitc.core.errors import VitcInputError


def option(default: Any, *flags: str, help: str = "", choices: tuple | None = None,  # noqa: A002 - argparse name
           type: Callable | None = None, metavar: str | None = None, keys: tuple[str, ...] = (),  # noqa: A002
           check: Callable | None = None, flag_only: bool = False, negate: str | None = None) -> Any:
    """A dataclass field that is also a pass option.

    ``flags``: command-line flags (the first names it in errors); ``type``: converts a CLI string,
    TOML or API value (``bool`` fields become ``store_true`` flags, or ``store_false`` with
    ``negate``); ``keys``: further names accepted in the API ``options`` dict; ``check(value)``
    raises ``ValueError`` with the reason when a value is not allowed.
    """
    meta = {"flags": flags, "help": help, "choices": choices, "type": type, "metavar": metavar,
            "keys": keys, "check": check, "negate": negate}
    return dataclasses.field(default=default, metadata={"vitc": meta})


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata["vitc"]


@dataclasses.dataclass(frozen=True)
class PassOptions:
    """Base of every pass's options dataclass (see the module docstring)."""

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if "vitc" in f.metadata]

    @classmethod
    def build(cls, pass_name: str, values: dict[str, Any]) -> "PassOptions":
        """An instance from ``values`` (field name → raw value; None = default), parsed and checked."""
        kw = {}
        for f in cls.option_fields():
            raw = values.get(f.name)
            if raw is None:
                continue
            kw[f.name] = parse_value(f, raw, pass_name)
        unknown = set(values) - {f.name for f in cls.option_fields()}
        if unknown:
            raise VitcInputError(f"{pass_name}: unknown option(s) {', '.join(sorted(unknown))}")
        return cls(**kw)

    def changed(self) -> dict[str, Any]:
        """The options set to something other than their default (for the pass record)."""
        return {f.name: getattr(self, f.name) for f in self.option_fields() if getattr(self, f.name) != f.default}


def _name(f: dataclasses.Field, pass_name: str) -> str:
    flags = _meta(f)["flags"]
    return flags[0] if flags else f"{pass_name}.{f.name}"


def parse_value(f: dataclasses.Field, raw: Any, pass_name: str = "") -> Any:
    """Convert and check one raw value for field ``f``; one-line error naming its flag."""
    m = _meta(f)
    name = _name(f, pass_name)
    typ = m["type"]
    try:
        if isinstance(f.default, bool) or typ is bool:
            value = to_bool(raw)
        elif typ is not None and not (isinstance(raw, (list, tuple)) and typ is str):
            value = typ(raw)
        else:
            value = raw
    except (TypeError, ValueError) as exc:
        why = str(exc) if str(exc) and not str(exc).startswith(("could not convert", "invalid literal")) else \
            f"cannot read {raw!r}"
        raise VitcInputError(f"{name}: {why}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise VitcInputError(f"{name}: must be a finite number (got {raw!r})")
    if m["choices"] is not None and value not in m["choices"]:
        raise VitcInputError(f"{name}: must be one of {', '.join(map(str, m['choices']))} (got {raw!r})")
    if m["check"] is not None:
        try:
            m["check"](value)
        except ValueError as exc:
            raise VitcInputError(f"{name}: {exc} (got {raw!r})") from None
    return value


def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


# --------------------------------------------------------------------------- checks
def at_least(lo: float) -> Callable:
    def check(v):
        if v < lo:
            raise ValueError(f"must be >= {lo:g}")
    return check


def positive(v) -> None:
    if v <= 0:
        raise ValueError("must be positive")


def in_range(lo: float, hi: float) -> Callable:
    def check(v):
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
    return check


_BLOCK_ITEM = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(\d+)\s*)?$")


def block_list(v) -> None:
    """Syntax of a block list (``all`` | ``0,2,5`` | ``0-3,7`` | a list of ints); existence is checked
    once the model's blocks are known (:func:`vitc.passes.registry.parse_block_list`)."""
    if isinstance(v, int) or (isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v)):
        return
    if not isinstance(v, str):
        raise ValueError("expected a block list such as all, 0,2,5 or 0-3")
    text = v.strip().lower()
    if text == "all":
        return
    parts = [p for p in text.split(",")]
    if not text or any(not p.strip() for p in parts):
        raise ValueError("empty entry in the block list (use e.g. 0,2,5 or 0-3 or all)")
    for part in parts:
        m = _BLOCK_ITEM.match(part)
        if m is None:
            raise ValueError(f"cannot read '{part.strip()}' (use e.g. 0,2,5 or 0-3 or all)")
        if m.group(2) is not None and int(m.group(2)) < int(m.group(1)):
            raise ValueError(f"range '{part.strip()}' is empty (write the lower block first)")


def optional_int(v) -> int | None:
    return None if v is None else int(v)


def parse_block_list(spec, n_blocks: int, flag: str = "--layers") -> list[int]:
    """``None``/"all" → all blocks; "0,2,5" / "0-3,7" / [0, 2] / negative indices → sorted, unique,
    checked against the model's ``n_blocks`` (one-line error naming ``flag``)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(n_blocks))
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, str):
        items = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            m = re.fullmatch(r"(-?\d+)\s*-\s*(\d+)", part)
            try:
                items.extend(range(int(m.group(1)), int(m.group(2)) + 1) if m else [int(part)])
            except ValueError:
                raise VitcInputError(f"{flag}: cannot read '{part}' (use e.g. 0,2,5 or 0-3 or all)") from None
    else:
        items = [int(x) for x in spec]
    out = set()
    for i in items:
        j = i + n_blocks if i < 0 else i
        if not 0 <= j < n_blocks:
            raise VitcInputError(f"{flag}: block {i} does not exist (model has {n_blocks} blocks: 0-{n_blocks - 1})")
        out.add(j)
    if not out:
        raise VitcInputError(f"{flag}: '{spec}' selects no block")
    return sorted(out)


__all__ = ["option", "PassOptions", "parse_value", "to_bool", "at_least", "positive", "in_range", "block_list", "parse_block_list"]
