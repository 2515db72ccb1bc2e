"""Hardware descriptions: presets under ``backends/hw/*.toml`` and user TOML files.

A description is a TOML file (schema in ``docs/hardware.md``). Every number in a preset
carries its source in a trailing comment; :func:`describe` prints them. A user file may
start from a preset with ``[meta] base = "rram-128"`` and override single fields.

    spec = load_hw("rram-128")           # a preset by name
    spec = load_hw("my_chip.toml")       # a user file (validated)
    spec["crossbar.rows"]                # 128
    print(describe(spec))                # every parameter with value and source

An invalid file raises :class:`vitc.compiler.errors.VitcInputError` whose message names
the file and the bad field, e.g. ``invalid hardware file my.toml: [crossbar].rows must be
a positive integer (got -3)``.
"""
from __future__ import annotations

import copy
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitc.compiler.errors import VitcInputError

HW_DIR = Path(__file__).resolve().parent / "hw"

# --------------------------------------------------------------------------- schema
# kind codes: "pint" positive int, "nnint" non-negative int, "pos" positive number,
# "nn" non-negative number, "str", "bool", "strlist", ("enum", (...)), "frac" 0<=x<=1.
_R, _O = True, False  # required / optional

SCHEMA: dict[str, dict[str, tuple[Any, bool, Any]]] = {
    "meta": {
        "name": ("str", _R, None),
        "kind": (("enum", ("xbar",)), _R, None),
        "description": ("str", _R, None),
        "sources": ("strlist", _O, []),
        "surrogates": ("strlist", _O, []),
        "base": ("str", _O, None),
    },
    "technology": {
        "node_nm": ("pos", _R, None),
        "device": ("str", _R, None),
    },
    "clock": {
        "freq_mhz": ("pos", _R, None),
    },
    "crossbar": {
        "rows": ("pint", _R, None),
        "cols": ("pint", _R, None),
        "cell_bits": ("pint", _R, None),
        "weight_bits": ("pint", _R, None),
        "input_bits": ("pint", _R, None),
        "output_bits": ("pint", _O, 8),
        "dac_bits": ("pint", _R, None),
        "cols_per_adc": ("pint", _R, None),
        "adc_bits": ("pint", _R, None),
        "signed": (("enum", ("differential", "offset")), _R, None),
        "rows_parallel": ("pint", _O, None),
        "read_latency_ns": ("pos", _R, None),
        "read_energy_pj_per_cell": ("nn", _R, None),
        "input_activity": ("frac", _O, 0.5),
        "area_um2": ("nn", _R, None),
        "leakage_uw": ("nn", _O, 0.0),
        "pipelined_read_convert": ("bool", _O, False),
    },
    "adc": {
        "energy_pj": ("nn", _R, None),
        "latency_ns": ("pos", _R, None),
        "area_um2": ("nn", _R, None),
        "leakage_uw": ("nn", _O, 0.0),
    },
    "periphery": {
        "dac_energy_pj_per_row": ("nn", _R, None),
        "mux_energy_pj_per_conversion": ("nn", _R, None),
        "decoder_energy_pj_per_read": ("nn", _O, 0.0),
        "area_um2_per_crossbar": ("nn", _R, None),
        "leakage_uw_per_crossbar": ("nn", _O, 0.0),
    },
    "accumulation": {
        "shift_add_energy_pj": ("nn", _R, None),
        "add_energy_pj": ("nn", _R, None),
        "add_latency_ns": ("nn", _R, None),
        "area_um2_per_crossbar": ("nn", _R, None),
        "leakage_uw_per_crossbar": ("nn", _O, 0.0),
    },
    "mapping": {
        "crossbars_per_pe": ("pint", _R, None),
        "pes_per_tile": ("pint", _R, None),
        "replicate": ("bool", _O, False),
        "max_replication": ("pint", _O, 1),
        "max_crossbars": ("nnint", _O, 0),
    },
    "buffer": {
        "energy_pj_per_bit": ("nn", _R, None),
        "bandwidth_bits_per_ns": ("pos", _R, None),
        "area_mm2_per_tile": ("nn", _R, None),
        "leakage_uw_per_tile": ("nn", _O, 0.0),
    },
    "interconnect": {
        "energy_pj_per_bit": ("nn", _R, None),
        "bandwidth_bits_per_ns": ("pos", _R, None),
        "area_mm2_per_tile": ("nn", _R, None),
        "overlap_with_compute": ("bool", _O, False),
    },
    "units.mac": {
        "count": ("pint", _R, None),
        "lanes": ("pint", _R, None),
        "mac_energy_pj": ("nn", _R, None),
        "area_mm2": ("nn", _R, None),
        "leakage_uw": ("nn", _O, 0.0),
    },
    "units.sfu": {
        "count": ("pint", _R, None),
        "lanes": ("pint", _R, None),
        "exp_energy_pj": ("nn", _R, None),
        "div_energy_pj": ("nn", _R, None),
        "sqrt_energy_pj": ("nn", _R, None),
        "erf_energy_pj": ("nn", _R, None),
        "sigmoid_energy_pj": ("nn", _R, None),
        "tanh_energy_pj": ("nn", _R, None),
        "area_mm2": ("nn", _R, None),
        "leakage_uw": ("nn", _O, 0.0),
    },
    "units.vector": {
        "count": ("pint", _R, None),
        "lanes": ("pint", _R, None),
        "add_energy_pj": ("nn", _R, None),
        "mul_energy_pj": ("nn", _R, None),
        "cmp_energy_pj": ("nn", _R, None),
        "area_mm2": ("nn", _R, None),
        "leakage_uw": ("nn", _O, 0.0),
    },
    "attention_products": {
        "mode": (("enum", ("digital", "xbar-write")), _R, None),
        "write_energy_pj_per_cell": ("nn", _R, None),
        "write_latency_ns_per_row": ("nn", _R, None),
        "endurance_cycles": ("pos", _R, None),
    },
    "pipeline": {
        "enabled": ("bool", _R, None),
        "leakage_window": (("enum", ("interval", "latency")), _O, "interval"),
    },
    "calibration": {
        "post_layout_energy_factor": ("pos", _O, 1.0),
    },
}

_KIND_TEXT = {
    "pint": "a positive integer", "nnint": "a non-negative integer", "pos": "a positive number",
    "nn": "a non-negative number", "str": "a string", "bool": "true or false",
    "strlist": "a list of strings", "frac": "a number between 0 and 1",
}


def _check_value(kind, v) -> bool:
    isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "pint":
        return isinstance(v, int) and not isinstance(v, bool) and v > 0
    if kind == "nnint":
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if kind == "pos":
        return isnum and v > 0
    if kind == "nn":
        return isnum and v >= 0
    if kind == "frac":
        return isnum and 0 <= v <= 1
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "strlist":
        return isinstance(v, list) and all(isinstance(s, str) for s in v)
    if isinstance(kind, tuple) and kind[0] == "enum":
        return v in kind[1]
    raise AssertionError(kind)


def _kind_text(kind) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(f'"{k}"' for k in kind[1])
    return _KIND_TEXT[kind]


# --------------------------------------------------------------------------- spec
@dataclass
class HardwareSpec:
    """A validated hardware description.

    ``data`` is the nested TOML content with defaults filled in; ``sources`` maps a dotted
    key (``"crossbar.rows"``) to the comment that documents it; ``origin`` is the preset
    name or file path it came from.
    """

    name: str
    data: dict
    sources: dict[str, str] = field(default_factory=dict)
    origin: str = ""

    def __getitem__(self, dotted: str):
        section, _, key = dotted.rpartition(".")
        return self.section(section)[key]

    def get(self, dotted: str, default=None):
        try:
            return self[dotted]
        except KeyError:
            return default

    def section(self, name: str) -> dict:
        node = self.data
        for part in name.split("."):
            node = node[part]
        return node

    @property
    def kind(self) -> str:
        return self.data.get("meta", {}).get("kind", "xbar")

    @property
    def description(self) -> str:
        return str(self.data.get("meta", {}).get("description", ""))

    @property
    def surrogates(self) -> list[str]:
        return list(self.data.get("meta", {}).get("surrogates", []))

    @property
    def freq_ghz(self) -> float:
        return self.data["clock"]["freq_mhz"] / 1000.0

    @property
    def slices(self) -> int:
        """Cells per weight: ⌈weight_bits / cell_bits⌉."""
        xb = self.data["crossbar"]
        return -(-xb["weight_bits"] // xb["cell_bits"])

    @property
    def columns_per_weight(self) -> int:
        """Physical columns per logical weight column: slices × (2 if differential)."""
        return self.slices * (2 if self.data["crossbar"]["signed"] == "differential" else 1)

    def fingerprint(self) -> dict:
        """The full parameter set (for report.json)."""
        return copy.deepcopy(self.data)


# --------------------------------------------------------------------------- parsing
_SECTION_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _strip_comment(line: str) -> tuple[str, str]:
    """Split ``line`` at the first ``#`` outside a string: (code, comment text)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i], line[i + 1:].strip()
    return line, ""


def _comment_sources(text: str) -> dict[str, str]:
    """Trailing (or immediately preceding) comments per dotted key."""
    sources: dict[str, str] = {}
    section, pending = "", []
    for raw in text.splitlines():
        code, comment = _strip_comment(raw)
        if not code.strip():
            if comment:
                pending.append(comment)
            else:
                pending = []
            continue
        m = _SECTION_RE.match(code)
        if m:
            section, pending = m.group(1).replace('"', ""), []
            continue
        m = _KEY_RE.match(code)
        if m:
            key = f"{section}.{m.group(1)}" if section else m.group(1)
            src = comment or " ".join(pending)
            if src:
                sources[key] = src
        pending = []
    return sources


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _validate(data: dict, label: str) -> dict:
    """Check ``data`` against :data:`SCHEMA`; return it with defaults filled in."""
    def bad(msg: str):
        raise VitcInputError(f"invalid hardware file {label}: {msg}")

    known_top = {s.split(".")[0] for s in SCHEMA}
    for top in data:
        if top not in known_top:
            bad(f"unknown section [{top}] (expected one of: {', '.join(sorted(known_top))})")
    units = data.get("units", {})
    if not isinstance(units, dict):
        bad("[units] must be a table")
    for u in units:
        if f"units.{u}" not in SCHEMA:
            bad(f"unknown section [units.{u}] (expected units.mac, units.sfu, units.vector)")
    out: dict = {}
    for sec, fields in SCHEMA.items():
        node = data
        for part in sec.split("."):
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if node is None:
            node = {}
            if any(req for (_, req, _) in fields.values()):
                bad(f"missing section [{sec}]")
        if not isinstance(node, dict):
            bad(f"[{sec}] must be a table")
        for key in node:
            if key not in fields:
                bad(f"unknown field [{sec}].{key}")
        vals = {}
        for key, (kind, req, default) in fields.items():
            if key not in node:
                if req:
                    bad(f"missing field [{sec}].{key} ({_kind_text(kind)})")
                if default is not None:
                    vals[key] = copy.deepcopy(default)
                continue
            v = node[key]
            if not _check_value(kind, v):
                bad(f"[{sec}].{key} must be {_kind_text(kind)} (got {v!r})")
            vals[key] = float(v) if kind in ("pos", "nn", "frac") else v
        target = out
        parts = sec.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = vals
    xb = out["crossbar"]
    if xb["cols_per_adc"] > xb["cols"]:
        bad(f"[crossbar].cols_per_adc must be <= [crossbar].cols (got {xb['cols_per_adc']})")
    if xb["cell_bits"] > xb["weight_bits"]:
        bad(f"[crossbar].cell_bits must be <= [crossbar].weight_bits (got {xb['cell_bits']})")
    if xb["dac_bits"] > xb["input_bits"]:
        bad(f"[crossbar].dac_bits must be <= [crossbar].input_bits (got {xb['dac_bits']})")
    if xb.get("rows_parallel") is None:
        xb["rows_parallel"] = xb["rows"]
    elif xb["rows_parallel"] > xb["rows"]:
        bad(f"[crossbar].rows_parallel must be <= [crossbar].rows (got {xb['rows_parallel']})")
    for s in out["meta"].get("surrogates", []):
        sec, _, key = s.rpartition(".")
        if sec not in SCHEMA or key not in SCHEMA[sec]:
            bad(f"[meta].surrogates names an unknown field {s!r}")
    return out


def list_presets() -> list[tuple[str, str]]:
    """(name, description) of every preset under ``backends/hw``, sorted by name."""
    out = []
    for path in sorted(HW_DIR.glob("*.toml")):
        try:
            with open(path, "rb") as f:
                meta = tomllib.load(f).get("meta", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue
        out.append((path.stem, str(meta.get("description", ""))))
    return out


def _read_toml(path: Path, label: str) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise VitcInputError(f"cannot read hardware file {label}: {e.strerror or e}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise VitcInputError(f"invalid hardware file {label}: not valid TOML ({e})") from None


def _load_raw(name_or_path: str | os.PathLike, seen: tuple = ()) -> tuple[dict, dict[str, str], str]:
    """(merged data, sources, label) following ``[meta] base`` chains."""
    s = os.fspath(name_or_path)
    preset = HW_DIR / f"{s}.toml"
    if os.sep not in s and "/" not in s and not s.endswith(".toml") and preset.is_file():
        path, label = preset, s
    else:
        path, label = Path(s), s
        if not path.is_file():
            names = ", ".join(n for n, _ in list_presets())
            raise VitcInputError(f"unknown hardware preset or file '{s}' (presets: {names})")
    data, text = _read_toml(path, label)
    sources = _comment_sources(text)
    base = data.get("meta", {}).get("base")
    if base is not None:
        if not isinstance(base, str):
            raise VitcInputError(f"invalid hardware file {label}: [meta].base must be a string (got {base!r})")
        if base in seen or base == label:
            raise VitcInputError(f"invalid hardware file {label}: [meta].base forms a cycle ({base})")
        bdata, bsources, _ = _load_raw(base, seen + (label,))
        data = _deep_merge(bdata, data)
        sources = {**{k: f"{v} (from {base})" for k, v in bsources.items()}, **sources}
    return data, sources, label


def load_hw(name_or_path) -> HardwareSpec:
    """A :class:`HardwareSpec` from a preset name, a TOML path, or a spec (returned as is).

    ``"A+B"`` (one crossbar and one systolic description, e.g. ``rram-128+vitality``) gives
    the combined description of the hybrid target (:func:`vitc.backends.hybrid.combine_specs`).
    """
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    s = os.fspath(name_or_path)
    if "+" in s and not Path(s).is_file():
        # "XBAR+SYSTOLIC": the hybrid target's two descriptions (backends/hybrid.py)
        from vitc.backends.hybrid import combine_specs
        parts = [p.strip() for p in s.split("+")]
        if any(not p for p in parts):
            raise VitcInputError(f"hardware '{s}': empty name in a '+'-joined hardware value")
        return combine_specs([load_hw(p) for p in parts], s)
    data, sources, label = _load_raw(name_or_path)
    meta = data.get("meta")
    if isinstance(meta, dict) and meta.get("kind") not in (None, "xbar") and isinstance(meta.get("kind"), str):
        # Another backend's description (e.g. kind = "systolic"): that backend validates it.
        if not isinstance(meta.get("name"), str):
            raise VitcInputError(f"invalid hardware file {label}: [meta].name must be a string")
        return HardwareSpec(name=meta["name"], data=data, sources=sources, origin=label)
    data = _validate(data, label)
    return HardwareSpec(name=data["meta"]["name"], data=data, sources=sources, origin=label)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _walk(prefix: str, node: dict):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _walk(f"{prefix}.{k}" if prefix else k, v)
    leaves = {k: v for k, v in node.items() if not isinstance(v, dict)}
    if leaves:
        yield prefix, leaves


def describe(spec: HardwareSpec) -> str:
    """Every parameter with its value and source, one per line (for ``vitc hw show``)."""
    spec = load_hw(spec)
    surr = set(spec.surrogates)
    lines = [f"{spec.name} — {spec.data.get('meta', {}).get('description', '')}", f"origin: {spec.origin}"]
    meta = spec.data.get("meta", {})
    for s in meta.get("sources", []):
        lines.append(f"  source: {s}")
    if spec.kind == "xbar":
        lines.append(f"derived: {spec.slices} cell(s) per weight, {spec.columns_per_weight} column(s) per "
                     f"weight column ({spec['crossbar.signed']} signed weights)")
        sections = [(sec, spec.section(sec)) for sec in SCHEMA if sec != "meta"]
    else:
        sections = sorted((sec, vals) for sec, vals in _walk("", spec.data) if sec != "meta")
    for sec, vals in sections:
        lines.append(f"[{sec}]")
        width = max((len(k) for k in vals), default=0)
        for key, v in vals.items():
            dotted = f"{sec}.{key}"
            src = spec.sources.get(dotted, "default (not set in the file)")
            tag = " [surrogate]" if dotted in surr else ""
            lines.append(f"  {key:<{width}} = {_fmt(v):<12} # {src}{tag}")
    if surr:
        lines.append("surrogates (figures from related tools, calibrations, or our choices): " + ", ".join(sorted(surr)))
    return "\n".join(lines)


__all__ = ["HardwareSpec", "SCHEMA", "load_hw", "list_presets", "describe", "HW_DIR"]
