"""Hardware descriptions: presets under ``core/hw/*.toml`` and user TOML files.

A description is a TOML file whose ``[meta] kind`` names its schema (``xbar``: a crossbar
chip; ``systolic``: a systolic accelerator; schemas in ``docs/hardware.md``). Every number
in a preset carries its source in a trailing comment; :func:`describe` prints them. A user
file may start from a preset with ``base = "rram-128"`` (top level or in ``[meta]``) and
override single fields; two descriptions joined by ``+`` (``rram-128+vitality``) form the
``hybrid`` description of one crossbar and one systolic part.

    spec = load_hw("rram-128")           # a preset by name
    spec = load_hw("my_chip.toml")       # a user file (validated)
    spec["crossbar.rows"]                # 128
    print(describe(spec))                # every parameter with value and source

Validation is complete before any work starts: every field is checked against its kind and
range (finite numbers only), unknown sections and fields are refused, and the message names
the file and the field, e.g. ``invalid hardware file my.toml: [crossbar].rows must be an
integer in 1..4096 (got -3)``. Cost models (``vitc.backends``) interpret the numbers; this
module only reads and checks them.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from vitc.core.errors import VitcInputError

HW_DIR = Path(__file__).resolve().parent / "hw"
DEFAULT_PRESET = {"xbar": "rram-128", "systolic": "vitality", "hybrid": "rram-128+vitality"}

# --------------------------------------------------------------------------- field kinds
# ("int", lo, hi)   integer in [lo, hi]          ("num", lo, hi, lo_open)  finite number in range
# "str", "bool", "strlist", ("enum", (...))
_R, _O = True, False  # required / optional
POS = ("num", 0.0, math.inf, True)        # > 0, finite
NN = ("num", 0.0, math.inf, False)        # >= 0, finite
FRAC = ("num", 0.0, 1.0, False)


def INT(lo: int = 1, hi: int = 1 << 20) -> tuple:  # noqa: N802 - reads like a type in the schema
    return ("int", lo, hi)


_META = {
    "name": ("str", _R, None),
    "kind": ("str", _R, None),
    "description": ("str", _R, None),
    "sources": ("strlist", _O, []),
    "surrogates": ("strlist", _O, []),
    "base": ("str", _O, None),
}

#: ``kind = "xbar"``: a crossbar chip (docs/hardware.md)
XBAR_SCHEMA: dict[str, dict[str, tuple[Any, bool, Any]]] = {
    "meta": _META,
    "technology": {
        "node_nm": (("num", 1.0, 1000.0, False), _R, None),
        "device": ("str", _R, None),
    },
    "clock": {
        "freq_mhz": (("num", 0.0, 1e5, True), _R, None),
    },
    "crossbar": {
        "rows": (INT(1, 4096), _R, None),
        "cols": (INT(1, 4096), _R, None),
        "cell_bits": (INT(1, 8), _R, None),
        "weight_bits": (INT(1, 16), _R, None),
        "input_bits": (INT(1, 16), _R, None),
        "output_bits": (INT(1, 32), _O, 8),
        "dac_bits": (INT(1, 8), _R, None),
        "cols_per_adc": (INT(1, 4096), _R, None),
        "adc_bits": (INT(1, 16), _R, None),
        "signed": (("enum", ("differential", "offset")), _R, None),
        "rows_parallel": (INT(1, 4096), _O, None),
        "read_latency_ns": (POS, _R, None),
        "read_energy_pj_per_cell": (NN, _R, None),
        "input_activity": (FRAC, _O, 0.5),
        "area_um2": (NN, _R, None),
        "leakage_uw": (NN, _O, 0.0),
        "pipelined_read_convert": ("bool", _O, False),
    },
    "adc": {
        "energy_pj": (NN, _R, None),
        "latency_ns": (POS, _R, None),
        "area_um2": (NN, _R, None),
        "leakage_uw": (NN, _O, 0.0),
    },
    "periphery": {
        "dac_energy_pj_per_row": (NN, _R, None),
        "mux_energy_pj_per_conversion": (NN, _R, None),
        "decoder_energy_pj_per_read": (NN, _O, 0.0),
        "area_um2_per_crossbar": (NN, _R, None),
        "leakage_uw_per_crossbar": (NN, _O, 0.0),
    },
    "accumulation": {
        "shift_add_energy_pj": (NN, _R, None),
        "add_energy_pj": (NN, _R, None),
        "add_latency_ns": (NN, _R, None),
        "area_um2_per_crossbar": (NN, _R, None),
        "leakage_uw_per_crossbar": (NN, _O, 0.0),
    },
    "mapping": {
        "crossbars_per_pe": (INT(1, 1 << 16), _R, None),
        "pes_per_tile": (INT(1, 1 << 16), _R, None),
        "replicate": ("bool", _O, False),
        "floorplan": (("enum", ("vitc", "neurosim")), _O, "vitc"),
        "max_replication": (INT(1, 1 << 16), _O, 1),
        "max_crossbars": (INT(0, 1 << 30), _O, 0),
    },
    "buffer": {
        "energy_pj_per_bit": (NN, _R, None),
        "bandwidth_bits_per_ns": (POS, _R, None),
        "area_mm2_per_tile": (NN, _R, None),
        "leakage_uw_per_tile": (NN, _O, 0.0),
    },
    "interconnect": {
        "energy_pj_per_bit": (NN, _R, None),
        "bandwidth_bits_per_ns": (POS, _R, None),
        "area_mm2_per_tile": (NN, _R, None),
        "area_um2_per_crossbar": (NN, _O, 0.0),
        "bus_wire_um": (NN, _O, 0.0),
        "tile_tree_fold": (POS, _O, 16.0),
        "global_bus_fold": (POS, _O, 4.0),
        "global_bus_max_wires": (INT(1, 1 << 24), _O, 2048),
        "overlap_with_compute": ("bool", _O, False),
        "static_uw_per_tile": (NN, _O, 0.0),
    },
    "units.mac": {
        "count": (INT(1, 1 << 16), _R, None),
        "lanes": (INT(1, 1 << 24), _R, None),
        "mac_energy_pj": (NN, _R, None),
        "area_mm2": (NN, _R, None),
        "leakage_uw": (NN, _O, 0.0),
    },
    "units.sfu": {
        "count": (INT(1, 1 << 16), _R, None),
        "lanes": (INT(1, 1 << 24), _R, None),
        "exp_energy_pj": (NN, _R, None),
        "div_energy_pj": (NN, _R, None),
        "sqrt_energy_pj": (NN, _R, None),
        "erf_energy_pj": (NN, _R, None),
        "sigmoid_energy_pj": (NN, _R, None),
        "tanh_energy_pj": (NN, _R, None),
        "area_mm2": (NN, _R, None),
        "leakage_uw": (NN, _O, 0.0),
    },
    "units.vector": {
        "count": (INT(1, 1 << 16), _R, None),
        "lanes": (INT(1, 1 << 24), _R, None),
        "add_energy_pj": (NN, _R, None),
        "mul_energy_pj": (NN, _R, None),
        "cmp_energy_pj": (NN, _R, None),
        "area_mm2": (NN, _R, None),
        "leakage_uw": (NN, _O, 0.0),
    },
    "attention_products": {
        "mode": (("enum", ("digital", "xbar-write")), _R, None),
        "write_energy_pj_per_cell": (NN, _R, None),
        "write_latency_ns_per_row": (NN, _R, None),
        "endurance_cycles": (POS, _R, None),
    },
    "pipeline": {
        "enabled": ("bool", _R, None),
        "leakage_window": (("enum", ("interval", "latency")), _O, "interval"),
    },
    "calibration": {
        "post_layout_energy_factor": (POS, _O, 1.0),
    },
    # NeuroSim's sense-amp ADC as circuit equations (backends/adc_circuit.py); all or nothing
    "adc_circuit": {
        "model": (("enum", ("neurosim-mlsa", "none")), _O, None),   # "none": a derived preset opts out
        "vdd": (POS, _O, None),
        "read_voltage": (POS, _O, None),
        "access_voltage": (POS, _O, None),
        "cg_n_ff": (NN, _O, None),
        "cj_n_ff": (NN, _O, None),
        "cg_p_ff": (NN, _O, None),
        "cj_p_ff": (NN, _O, None),
        "gate_height_um": (POS, _O, None),
        "gate_pitch_um": (POS, _O, None),
        "cell_height_um": (POS, _O, None),
        "cell_width_um": (POS, _O, None),
        "array_col_pitch_um": (POS, _O, None),
        "bitline_cap_ff_per_row": (NN, _O, None),
        "wordline_cap_ff_per_col": (NN, _O, None),
        "ron_ohm": (POS, _O, None),
        "roff_ohm": (POS, _O, None),
        "access_ohm": (NN, _O, None),
        "column_power_fit": (("numlist", 6), _O, None),
        "column_power_breaks_ohm": (("numlist", 2), _O, None),
        "latency_fit": (("numlist", 4), _O, None),
        "latency_break_ohm": (POS, _O, None),
        "latency_cap_threshold_ohm": (POS, _O, None),
        "latency_cap_r2_ohm": (POS, _O, None),
        "latency_ref_cap_ff": (POS, _O, None),
        "latency_cap_slope_s": (POS, _O, None),
    },
    # NeuroSim's synchronous chip timing (backends/neurosim_chip.py); all or nothing
    "neurosim_chip": {
        "model": (("enum", ("neurosim-sync", "none")), _O, None),   # "none": a derived preset opts out
        "beta": (POS, _O, None),
        "max_freq_ghz": (POS, _O, None),
        "select_delay_ns": (("table", 4), _O, None),
        "encoder_delay_ns": (("table", 2), _O, None),
        "adder_2bit_delay_ns": (POS, _O, None),
        "adder_delay_ns_per_bit": (POS, _O, None),
        "bus_delay_ns_per_mm": (POS, _O, None),
        "tile_buffer_core_bits": (INT(1, 1 << 30), _O, None),
        "tile_buffer_core_cols": (INT(1, 1 << 20), _O, None),
        "global_buffer_core_bits": (INT(1, 1 << 30), _O, None),
        "global_buffer_core_cols": (INT(1, 1 << 20), _O, None),
        "bus_energy_pj_per_bit_mm": (POS, _O, None),
        "input_toggle": (FRAC, _O, None),
        "output_toggle": (FRAC, _O, None),
        "dff_energy_pj_per_bit": (POS, _O, None),
        "tile_buffer_read_pj_per_bit": (POS, _O, None),
        "tile_buffer_write_pj_per_bit": (POS, _O, None),
        "global_buffer_read_pj_per_bit": (POS, _O, None),
        "global_buffer_write_pj_per_bit": (POS, _O, None),
        "subarray": (("table", 9), _O, None),
        "pe_bus_energy_pj_per_bit_mm": (POS, _O, None),
        "full_adder_area_um2": (POS, _O, None),
        "dff_area_um2": (POS, _O, None),
    },
}


def _all_or_nothing(out: dict, section: str, model: str, bad) -> None:
    sec = out.get(section) or {}
    if sec and sec.get("model") != "none":
        if "model" not in sec:
            bad(f"[{section}] needs model = \"{model}\" when any of its fields is given")
        missing = [k for k in XBAR_SCHEMA[section] if k not in sec]
        if missing:
            bad(f"[{section}] with model = \"{sec['model']}\" needs every field; missing {', '.join(missing)}")


def _grid_problem(table: list, dims: int) -> str | None:
    """Why a table of rows ``(*coordinates, *values)`` is not a full grid of positive coordinates
    (what multilinear lookup needs), or None."""
    coords = [tuple(r[:dims]) for r in table]
    if any(c <= 0 for r in coords for c in r):
        return f"needs positive values in its first {dims} column(s)"
    if len(set(coords)) != len(coords):
        return "lists a grid point twice"
    full = math.prod(len({r[i] for r in coords}) for i in range(dims))
    if full != len(coords):
        return f"is not a full grid: {len(coords)} rows for {full} points of its coordinates"
    return None


def _xbar_checks(out: dict, bad) -> None:
    xb = out["crossbar"]
    _all_or_nothing(out, "adc_circuit", "neurosim-mlsa", bad)
    _all_or_nothing(out, "neurosim_chip", "neurosim-sync", bad)
    for key, dims in (("select_delay_ns", 3), ("encoder_delay_ns", 1), ("subarray", 4)):
        table = (out.get("neurosim_chip") or {}).get(key)
        if table:
            problem = _grid_problem(table, dims)
            if problem:
                bad(f"[neurosim_chip].{key} {problem}")
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


#: ``kind = "systolic"``: the ViTALiTy-style accelerator (docs/systolic.md)
_SA_UNIT = {"rows": (INT(1, 4096), _O, None), "cols": (INT(1, 4096), _O, None),
            "area_mm2": (NN, _R, None), "power_mw": (NN, _R, None)}
_PP_UNIT = {"width": (INT(1, 1 << 16), _R, None), "area_mm2": (NN, _R, None), "power_mw": (NN, _R, None)}
SYSTOLIC_SCHEMA: dict[str, dict[str, tuple[Any, bool, Any]]] = {
    "meta": _META,
    "clock": {"freq_mhz": (("num", 0.0, 1e5, True), _R, None)},
    "precision": {"bits": (INT(1, 64), _R, None)},
    "systolic": {
        "rows": (INT(1, 4096), _R, None),
        "cols": (INT(1, 4096), _R, None),
        "diag_rows": (INT(1, 4096), _R, None),
        "diag_cols": (INT(1, 4096), _R, None),
        # settings (backend options may override them); the backend checks it knows the same names
        "dataflow": (("enum", ("ws", "is", "os", "auto")), _O, None),
        "gemm_mode": (("enum", ("scalesim", "double-buffered")), _O, None),
        "attention_dataflow": (("enum", ("down-forward", "g-stationary")), _O, None),
        "attention_schedule": (("enum", ("pipelined", "scalesim", "double-buffered")), _O, None),
        "stalls": ("bool", _O, None),
        "energy_model": (("enum", ("busy", "activity")), _O, None),
    },
    "units.sa_general": _SA_UNIT,
    "units.sa_diag": _SA_UNIT,
    "units.accumulator_array": _PP_UNIT,
    "units.adder_array": _PP_UNIT,
    "units.divider_array": _PP_UNIT,
    "units.exp_array": _PP_UNIT,
    "sram": {
        "buffers": ("strlist", _R, None),
        "kb_per_buffer": (POS, _R, None),
        "area_mm2": (NN, _R, None),
        "power_mw": (NN, _R, None),
        "words_per_access": (INT(1, 1 << 20), _R, None),
    },
    "dram": {
        "energy_pj_per_bit": (NN, _R, None),
        "bandwidth_words_per_cycle": (POS, _R, None),
    },
    "total": {"area_mm2": (NN, _O, None), "power_mw": (NN, _O, None)},
}


def _systolic_checks(out: dict, bad) -> None:
    if not out["sram"]["buffers"]:
        bad("[sram].buffers must name at least one buffer")


#: kind -> (schema, extra cross-field checks); :func:`register_kind` adds more
KINDS: dict[str, tuple[dict, Any]] = {"xbar": (XBAR_SCHEMA, _xbar_checks),
                                      "systolic": (SYSTOLIC_SCHEMA, _systolic_checks)}
SCHEMA = XBAR_SCHEMA  # the crossbar schema, by its historical name


def register_kind(kind: str, schema: dict, checks=None) -> None:
    """Let descriptions of ``kind`` be validated against ``schema`` (a new backend's format)."""
    KINDS[kind] = (schema, checks)


def _kind_text(kind) -> str:
    if isinstance(kind, tuple) and kind[0] == "enum":
        return "one of " + ", ".join(f'"{k}"' for k in kind[1])
    if isinstance(kind, tuple) and kind[0] == "int":
        return f"an integer in {kind[1]}..{kind[2]}"
    if isinstance(kind, tuple) and kind[0] == "numlist":
        return f"a list of {kind[1]} finite numbers"
    if isinstance(kind, tuple) and kind[0] == "table":
        return f"a non-empty list of rows of {kind[1]} non-negative finite numbers"
    if isinstance(kind, tuple) and kind[0] == "num":
        _, lo, hi, lo_open = kind
        if hi == math.inf:
            return "a positive finite number" if lo_open else "a non-negative finite number"
        return f"a number between {lo:g} and {hi:g}"
    return {"str": "a string", "bool": "true or false", "strlist": "a list of strings"}[kind]


def _check_value(kind, v) -> bool:
    isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(kind, tuple) and kind[0] == "int":
        return isinstance(v, int) and not isinstance(v, bool) and kind[1] <= v <= kind[2]
    if isinstance(kind, tuple) and kind[0] == "num":
        _, lo, hi, lo_open = kind
        return isnum and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if isinstance(kind, tuple) and kind[0] == "enum":
        return isinstance(v, str) and v in kind[1]
    if isinstance(kind, tuple) and kind[0] == "numlist":
        return (isinstance(v, list) and len(v) == kind[1]
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))
    if isinstance(kind, tuple) and kind[0] == "table":
        return (isinstance(v, list) and len(v) > 0
                and all(_check_value(("numlist", kind[1]), r) and min(r) >= 0 for r in v))
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "strlist":
        return isinstance(v, list) and all(isinstance(s, str) for s in v)
    raise AssertionError(kind)


# --------------------------------------------------------------------------- spec
@dataclass
class HardwareSpec:
    """A validated hardware description.

    ``data`` is the nested TOML content with defaults filled in; ``sources`` maps a dotted
    key (``"crossbar.rows"``) to the comment that documents it; ``origin`` is the preset
    name or file path it came from. A hybrid description keeps its systolic part under
    ``data["parts"]["systolic"]``.
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
        except (KeyError, TypeError):
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

    def crossbars_for(self, K: int, N: int, count: int = 1) -> int:
        """Crossbars one copy of ``count`` K×N weight matrices takes:
        ``count·⌈K/rows⌉·⌈N·slices·(2 if differential)/cols⌉``."""
        R, C = self["crossbar.rows"], self["crossbar.cols"]
        return count * (-(-K // R)) * (-(-(N * self.columns_per_weight) // C))

    def part(self, kind: str) -> "HardwareSpec":
        """The ``kind`` part of a hybrid description (the description itself if it is of that kind)."""
        if self.kind == kind:
            return self
        if self.kind == "hybrid" and kind == "systolic":
            data = self.data["parts"]["systolic"]
            prefix = "parts.systolic."
            return HardwareSpec(data["meta"]["name"], data,
                                {k[len(prefix):]: v for k, v in self.sources.items() if k.startswith(prefix)},
                                self.origin)
        if self.kind == "hybrid" and kind == "xbar":
            return self
        raise VitcInputError(f"hardware '{self.name}' is a {self.kind} description; it has no {kind} part")

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


def _leaves(prefix: str, node: dict):
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            yield from _leaves(key, v)
        else:
            yield key, v


def validate(data: dict, label: str) -> dict:
    """Check ``data`` against the schema of its ``[meta] kind``; return it with defaults filled in."""
    def bad(msg: str):
        raise VitcInputError(f"invalid hardware file {label}: {msg}")

    meta = data.get("meta")
    if not isinstance(meta, dict):
        bad("missing section [meta] (name, kind, description)")
    kind = meta.get("kind")
    if kind not in KINDS:
        bad(f"[meta].kind must be one of {', '.join(repr(k) for k in sorted(KINDS))} (got {kind!r})")
    schema, checks = KINDS[kind]
    known_top = {s.split(".")[0] for s in schema}
    for top in data:
        if top not in known_top:
            bad(f"unknown section [{top}] (expected one of: {', '.join(sorted(known_top))})")
    for top in known_top:
        subs = [s for s in schema if s.startswith(top + ".")]
        node = data.get(top)
        if subs and isinstance(node, dict):
            for sub in node:
                if f"{top}.{sub}" not in schema:
                    bad(f"unknown section [{top}.{sub}] (expected {', '.join(sorted(subs))})")
    out: dict = {}
    for sec, fields in schema.items():
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
        for key, (kind_, req, default) in fields.items():
            if key not in node:
                if req:
                    bad(f"missing field [{sec}].{key} ({_kind_text(kind_)})")
                if default is not None:
                    vals[key] = copy.deepcopy(default)
                continue
            v = node[key]
            if not _check_value(kind_, v):
                bad(f"[{sec}].{key} must be {_kind_text(kind_)} (got {v!r})")
            vals[key] = float(v) if isinstance(kind_, tuple) and kind_[0] == "num" else v
        target = out
        parts = sec.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = vals
    if checks is not None:
        checks(out, bad)
    for s in out["meta"].get("surrogates", []):
        sec, _, key = s.rpartition(".")
        if sec not in schema or key not in schema[sec]:
            bad(f"[meta].surrogates names an unknown field {s!r}")
    return out


def list_presets() -> list[tuple[str, str, str]]:
    """(name, kind, description) of every preset under ``core/hw``, sorted by name."""
    out = []
    for path in sorted(HW_DIR.glob("*.toml")):
        data, _, _ = _load_raw(path.stem)
        meta = data.get("meta", {})
        out.append((path.stem, str(meta.get("kind", "?")), str(meta.get("description", ""))))
    return out


def _read_toml(path: Path, label: str) -> tuple[dict, str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VitcInputError(f"cannot read hardware file {label}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VitcInputError(f"invalid hardware file {label}: not a text (UTF-8 TOML) file") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise VitcInputError(f"invalid hardware file {label}: not valid TOML ({e})") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in HW_DIR.glob("*.toml"))


def _load_raw(name_or_path: str | os.PathLike, seen: tuple = ()) -> tuple[dict, dict[str, str], str]:
    """(merged data, sources, label) following ``base`` chains; a user file's own values win."""
    s = os.fspath(name_or_path)
    preset = HW_DIR / f"{s}.toml"
    is_preset = os.sep not in s and "/" not in s and not s.endswith(".toml") and preset.is_file()
    if is_preset:
        path, label = preset, s
    else:
        path, label = Path(s), s
        if "\x00" in s or not path.is_file():
            raise VitcInputError(f"unknown hardware preset or file '{s}' (presets: {', '.join(preset_names())})")
    data, text = _read_toml(path, label)
    sources = _comment_sources(text)
    base = data.pop("base", None)       # top-level ``base = "..."`` (README form) or [meta].base
    meta = data.get("meta")
    if isinstance(meta, dict) and "base" in meta:
        base = meta.pop("base") if base is None else base
    if base is not None:
        if not isinstance(base, str):
            raise VitcInputError(f"invalid hardware file {label}: base must be a preset name or file (got {base!r})")
        if base in seen or base == label:
            raise VitcInputError(f"invalid hardware file {label}: base forms a cycle ({base})")
        bdata, bsources, _ = _load_raw(base, seen + (label,))
        if not is_preset:
            _describe_override(data, bdata, base, path)
        data = _deep_merge(bdata, data)
        sources = {**{k: f"{v} (from {base})" for k, v in bsources.items()}, **sources}
        data.setdefault("meta", {})["base"] = base
    return data, sources, label


def _describe_override(data: dict, base: dict, base_name: str, path: Path) -> None:
    """A user file on a preset: name it after the file and say what it changed (unless it says itself)."""
    meta = data.setdefault("meta", {})
    if not isinstance(meta, dict):
        return
    changed = [f"{k}={v}" for k, v in _leaves("", {k: v for k, v in data.items() if k != "meta"})
               if _get(base, k) != v]
    meta.setdefault("name", path.stem)
    if "description" not in meta:
        what = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        meta["description"] = (f"{base_name} modified by {path.name}: {what}" if changed
                               else f"{base_name} (unchanged, from {path.name})")


def _get(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def combine(specs: list[HardwareSpec], label: str) -> HardwareSpec:
    """One crossbar and one systolic description → the ``hybrid`` description."""
    kinds = sorted(s.kind for s in specs)
    if len(specs) != 2 or kinds != ["systolic", "xbar"]:
        got = ", ".join(f"{s.name} ({s.kind})" for s in specs)
        raise VitcInputError(f"hardware '{label}': a '+'-joined hardware value needs one crossbar and one systolic "
                             f"description, e.g. rram-128+vitality (got {got})")
    xb = next(s for s in specs if s.kind == "xbar")
    sa = next(s for s in specs if s.kind == "systolic")
    prefix = "parts.systolic."
    data = copy.deepcopy(xb.data)
    data["meta"] = {
        "name": f"{xb.name}+{sa.name}", "kind": "hybrid",
        "description": f"hybrid: {xb.name} crossbars for static MVMs + {sa.name} systolic unit for the rest "
                       f"({xb.description} | {sa.description})",
        "sources": list(xb.data.get("meta", {}).get("sources", [])) + list(sa.data.get("meta", {}).get("sources", [])),
        "surrogates": sorted(xb.surrogates) + sorted(prefix + k for k in sa.surrogates),
        "parts": [xb.name, sa.name],
    }
    data["parts"] = {"systolic": copy.deepcopy(sa.data)}
    sources = dict(xb.sources)
    sources.update({prefix + k: v for k, v in sa.sources.items()})
    return HardwareSpec(name=data["meta"]["name"], data=data, sources=sources, origin=label)


def load_hw(name_or_path) -> HardwareSpec:
    """A :class:`HardwareSpec` from a preset name, a TOML path, ``"A+B"``, or a spec (returned as is)."""
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise VitcInputError(f"hardware must be a preset name or a TOML file (got {type(name_or_path).__name__})")
    s = os.fspath(name_or_path)
    if not s.strip():
        raise VitcInputError(f"empty hardware name (presets: {', '.join(preset_names())})")
    if "+" in s and not Path(s).is_file():
        parts = [p.strip() for p in s.split("+")]
        if any(not p for p in parts):
            raise VitcInputError(f"hardware '{s}': empty name in a '+'-joined hardware value")
        return combine([load_hw(p) for p in parts], s)
    data, sources, label = _load_raw(s)
    data = validate(data, label)
    return HardwareSpec(name=data["meta"]["name"], data=data, sources=sources, origin=label)


#: How a per-crossbar area follows the array when ``override`` changes rows/cols: the cells
#: (rows × cols; the interconnect spans a tile whose size follows its arrays), the edges
#: (rows + cols: word-line drivers and decoders along one, column mux and switch matrices along the
#: other) or the columns (shift-add units behind the column ADCs).
AREA_SCALING = {
    "crossbar.area_um2": "cells",
    "periphery.area_um2_per_crossbar": "edges",
    "accumulation.area_um2_per_crossbar": "cols",
    "interconnect.area_um2_per_crossbar": "cells",
}


def override(spec: HardwareSpec, values: dict[str, Any], label: str | None = None) -> HardwareSpec:
    """``spec`` with dotted fields replaced (``{"crossbar.adc_bits": 6}``), validated again.

    Used by sweeps and by ``--adc-bits``-style options; a hybrid spec takes ``parts.systolic.*`` keys.
    A crossbar that read all its rows at once (``rows_parallel == rows``) still does after ``rows``
    changes, unless ``rows_parallel`` is given too; its per-crossbar areas scale with the array
    (:data:`AREA_SCALING`) unless given too (a cell's area is set by the technology, not the array).
    """
    data = copy.deepcopy(spec.data)
    xb = data.get("crossbar", {})
    if "crossbar.rows" in values and "crossbar.rows_parallel" not in values and \
            xb.get("rows_parallel") is not None and xb.get("rows_parallel") == xb.get("rows"):
        values = {**values, "crossbar.rows_parallel": values["crossbar.rows"]}
    if ("crossbar.rows" in values or "crossbar.cols" in values) and xb.get("rows") and xb.get("cols"):
        rows, cols = values.get("crossbar.rows", xb["rows"]), values.get("crossbar.cols", xb["cols"])
        if isinstance(rows, int) and isinstance(cols, int) and rows > 0 and cols > 0:
            r0, c0 = xb["rows"], xb["cols"]
            law = {"cells": rows * cols / (r0 * c0), "edges": (rows + cols) / (r0 + c0), "cols": cols / c0}
            for key, how in AREA_SCALING.items():
                sec, field = key.split(".")
                v = data.get(sec, {}).get(field)
                if key not in values and isinstance(v, (int, float)) and not isinstance(v, bool):
                    values = {**values, key: v * law[how]}
    for dotted, v in values.items():
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise VitcInputError(f"hardware field '{dotted}' does not exist in {spec.name}")
            node = node[p]
        if parts[-1] not in node and not _optional_field(spec, dotted):
            raise VitcInputError(f"hardware field '{dotted}' does not exist in {spec.name}")
        node[parts[-1]] = v
    changes = ", ".join(f"{k}={v}" for k, v in values.items())
    label = label or f"{spec.name} with {changes}"
    name = f"{spec.name}[{changes}]"
    data.setdefault("meta", {})
    data["meta"]["name"] = name
    data["meta"]["description"] = f"{spec.description} — modified: {changes}"
    if spec.kind == "hybrid":
        sa = data.pop("parts")["systolic"]
        meta = data.pop("meta")
        xb = validate({**data, "meta": {**meta, "kind": "xbar"}}, label)
        sa = validate(sa, label)
        out = combine([HardwareSpec(xb["meta"]["name"], xb), HardwareSpec(sa["meta"]["name"], sa)], label)
        out.data["meta"].update(name=name, description=meta["description"])
        return HardwareSpec(name, out.data, spec.sources, label)
    return HardwareSpec(name, validate(data, label), spec.sources, label)


def _optional_field(spec: HardwareSpec, dotted: str) -> bool:
    sec, _, key = dotted.rpartition(".")
    kind = spec.kind if spec.kind != "hybrid" or not dotted.startswith("parts.") else "systolic"
    if dotted.startswith("parts.systolic."):
        sec = sec[len("parts.systolic."):]
    schema = KINDS.get(kind if kind != "hybrid" else "xbar", ({}, None))[0]
    return key in schema.get(sec, {})


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list) and len(v) > 8 and all(isinstance(r, list) for r in v):
        return f"table of {len(v)} rows of {len(v[0])}: {_fmt(v[0])} ... {_fmt(v[-1])}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _sections(node: dict, prefix: str = ""):
    """(dotted section, {leaf: value}) for every table, depth first."""
    leaves = {k: v for k, v in node.items() if not isinstance(v, dict)}
    if leaves and prefix:
        yield prefix, leaves
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _sections(v, f"{prefix}.{k}" if prefix else k)


def describe(spec: HardwareSpec) -> str:
    """Every parameter with its value and source, one per line (for ``vitc hw show``)."""
    spec = load_hw(spec)
    surr = set(spec.surrogates)
    meta = spec.data.get("meta", {})
    lines = [f"{spec.name} ({spec.kind}) — {meta.get('description', '')}", f"origin: {spec.origin}"]
    if meta.get("base"):
        lines.append(f"base: {meta['base']}")
    for s in meta.get("sources", []):
        lines.append(f"  source: {s}")
    if spec.kind in ("xbar", "hybrid"):
        lines.append(f"derived: {spec.slices} cell(s) per weight, {spec.columns_per_weight} column(s) per "
                     f"weight column ({spec['crossbar.signed']} signed weights)")
    for sec, vals in _sections(spec.data):
        if sec == "meta" or sec.startswith("parts.") and sec.endswith(".meta"):
            continue
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


__all__ = ["HardwareSpec", "SCHEMA", "XBAR_SCHEMA", "SYSTOLIC_SCHEMA", "KINDS", "register_kind", "load_hw",
           "list_presets", "describe", "override", "combine", "validate", "HW_DIR", "DEFAULT_PRESET"]
