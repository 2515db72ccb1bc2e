"""``vitc compile --config vitc.toml``: every compile setting in one file (docs/config.md).

    [compile]                      # the command-line settings (flags override them)
    target = "xbar"
    hw = "rram-128"
    passes = ["taylor", "reorder"]
    calib = "calib.npz"            # relative paths are relative to this file
    seed = 0
    [compile.input_shape]
    input = [1, 3, 224, 224]

    [hardware]                     # dotted fields of the hardware file format, on top of hw
    "crossbar.adc_bits" = 6

    [passes.taylor]                # each pass's options (field names of its Options dataclass)
    layers = "0-5"
    max_drop = 1.0

    [simulate]                     # non-ideal simulation (as --emit-sim), e.g. adc_bits = "4,6,8"

Unknown sections or keys are one-line errors naming them; values are checked where they are
used, before any work starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from vitc.core.errors import VitcInputError

COMPILE_KEYS = {"target", "hw", "passes", "calib", "calib_samples", "preprocess", "seed", "batch", "seq_len",
                "output", "input_shape", "recover", "tokenizer"}
SIMULATE_KEYS = {"adc_bits", "mode", "variation", "variation_model", "on_off_ratio", "adc_range", "adc_fullscale",
                 "adc_percentile", "input_scaling", "offset_correction", "weight_bits", "input_bits", "cell_bits",
                 "dac_bits", "inputs", "samples"}
SECTIONS = {"compile", "hardware", "passes", "simulate"}
_PATH_KEYS = ("calib", "output")


def read_toml(path: str | Path) -> dict:
    """A TOML file's tables (one-line errors for a missing, binary or malformed file)."""
    p = Path(path)
    if not p.is_file():
        raise VitcInputError(f"file not found: {p}")
    return _read(p)


def _read(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VitcInputError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise VitcInputError(f"config file {path} is not a text (UTF-8 TOML) file") from None
    except tomllib.TOMLDecodeError as exc:
        raise VitcInputError(f"config file {path} is not valid TOML ({exc})") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """The checked sections of a config file: ``compile``, ``hardware``, ``passes``, ``simulate``."""
    p = Path(path)
    if not p.is_file():
        raise VitcInputError(f"config file not found: {p}")
    data = _read(p)
    bad = sorted(set(data) - SECTIONS)
    if bad:
        raise VitcInputError(f"config {p.name}: unknown section(s) {', '.join(bad)} "
                             f"(sections: {', '.join(sorted(SECTIONS))})")
    for sec in SECTIONS & set(data):
        if not isinstance(data[sec], dict):
            raise VitcInputError(f"config {p.name}: [{sec}] must be a table")
    run = dict(data.get("compile", {}))
    bad = sorted(set(run) - COMPILE_KEYS)
    if bad:
        raise VitcInputError(f"config {p.name}: unknown [compile] key(s) {', '.join(bad)} "
                             f"(keys: {', '.join(sorted(COMPILE_KEYS))})")
    base = p.parent
    for key in _PATH_KEYS:
        if isinstance(run.get(key), str) and not Path(run[key]).is_absolute():
            run[key] = str(base / run[key])
    if isinstance(run.get("hw"), str) and "+" not in run["hw"] and (base / run["hw"]).is_file():
        run["hw"] = str(base / run["hw"])
    if isinstance(run.get("passes"), list):
        run["passes"] = ",".join(str(x) for x in run["passes"])
    shapes = run.get("input_shape", {})
    if not isinstance(shapes, dict) or not all(isinstance(v, list) and all(isinstance(d, int) and d > 0 for d in v)
                                               for v in shapes.values()):
        raise VitcInputError(f"config {p.name}: [compile.input_shape] maps input names to lists of positive "
                             "integers, e.g. input = [1, 3, 224, 224]")
    passes = data.get("passes", {})
    for name, table in passes.items():
        if not isinstance(table, dict):
            raise VitcInputError(f"config {p.name}: [passes.{name}] must be a table")
    sim = dict(data.get("simulate", {}))
    bad = sorted(set(sim) - SIMULATE_KEYS)
    if bad:
        raise VitcInputError(f"config {p.name}: unknown [simulate] key(s) {', '.join(bad)}")
    if isinstance(sim.get("inputs"), str) and not Path(sim["inputs"]).is_absolute():
        sim["inputs"] = str(base / sim["inputs"])
    hardware = data.get("hardware", {})
    flat = {}
    for key, value in hardware.items():      # dotted keys, or nested tables
        if isinstance(value, dict):
            for sub, v in _flatten(key, value):
                flat[sub] = v
        else:
            flat[key] = value
    return {"compile": run, "hardware": flat, "passes": passes, "simulate": sim}


def _flatten(prefix: str, node: dict):
    for k, v in node.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            yield from _flatten(key, v)
        else:
            yield key, v


__all__ = ["load_config", "COMPILE_KEYS", "SIMULATE_KEYS", "SECTIONS"]
