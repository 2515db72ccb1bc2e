"""``vitc sweep``: design-space exploration over hardware, targets, passes and their options.

A grid file (TOML, docs/sweep.md) lists values per parameter; the sweep is their Cartesian
product. The model goes through the front end **once**; each distinct pass configuration is
compiled once (and cached in ``DIR/cache``); every point is then one costing of that compiled
model on one hardware description — run in a local process pool, or on a Dask cluster
(``--cluster tcp://host:8786``, or a ``dask-jobqueue`` spec in the grid). Finished points are
written to ``DIR/points/<id>.json`` as they complete, so an interrupted sweep resumes where it
stopped. The table (one row per point, every input parameter and output figure) goes to
``results.parquet`` and ``results.csv``, the Pareto fronts to ``sweep.html``.

Why Dask: it is what research clusters already run (``dask-jobqueue`` submits workers to SLURM,
PBS, SGE, LSF), a ``distributed.LocalCluster`` behaves like a remote one (so CI tests the same
path), and task results stream back as they finish, which the resume logic needs.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

import vitc.plots as plots
from vitc.backends.api import analyse
from vitc.backends.results import rollups
from vitc.core.config import read_toml
from vitc.core.errors import VitcInputError
from vitc.core.hardware import DEFAULT_PRESET, load_hw, override
from vitc.core.io import check_outdir, write_outputs
from vitc.core.progress import SILENT, Progress
from vitc.passes import manager
from vitc.pipeline import front_end, plan_compile, run_plan
from vitc.report import PAGE_CSS, html_table
from vitc.runtime.data import load_dataset
from vitc.runtime.nonideal.arith import SimConfig
from vitc.runtime.nonideal.simulate import simulate_model
from vitc.runtime.validate import validate_models

SCHEMA = ("vitc.sweep", 1)
FIGURES = ("energy_pj", "latency_ns", "area_mm2", "edap_j_s_mm2", "tops_per_w", "tops_per_mm2", "throughput_ips",
           "pipeline_interval_ns", "crossbars", "macs")
GRID_SECTIONS = {"hardware", "compile", "passes", "accuracy", "cluster"}


# --------------------------------------------------------------------------- the grid
@dataclass
class Grid:
    """A parsed, validated grid file (docs/sweep.md)."""
    bases: list[str | None]
    hardware: dict[str, list]
    targets: list[str]
    passes: list[str]
    pass_options: dict[str, dict[str, list]]
    compile: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    source: str = ""


def _values(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def parse_grid(data: dict, source: str = "grid") -> Grid:
    """Check a grid (a TOML file's tables) and return it; one-line errors name the entry."""
    unknown = set(data) - GRID_SECTIONS
    if unknown:
        raise VitcInputError(f"{source}: unknown section(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(GRID_SECTIONS))})")
    hw = dict(data.get("hardware", {}))
    bases = _values(hw.pop("base", [None]))
    hardware = {}
    for key, v in hw.items():
        if isinstance(v, dict):
            raise VitcInputError(f"{source}: [hardware] takes dotted keys with a value or a list "
                                 f"(\"crossbar.adc_bits\" = [4, 6]); got a table at '{key}'")
        values = _values(v)
        if not values:
            raise VitcInputError(f"{source}: [hardware] '{key}' has an empty list of values")
        hardware[key] = values
    comp = dict(data.get("compile", {}))
    targets = [str(t) for t in _values(comp.pop("target", ["xbar"]))]
    passes = [",".join(p) if isinstance(p, list) else str(p) for p in _values(comp.pop("passes", ["none"]))]
    for t in targets:
        if t not in DEFAULT_PRESET:
            raise VitcInputError(f"{source}: [compile] target '{t}' (choose from {', '.join(sorted(DEFAULT_PRESET))})")
    for p in passes:
        manager.select(p)
    known_compile = {"calib", "calib_samples", "seed", "batch", "seq_len", "tokenizer", "preprocess"}
    if set(comp) - known_compile:
        raise VitcInputError(f"{source}: [compile] unknown key(s) {', '.join(sorted(set(comp) - known_compile))} "
                             f"(known: target, passes, {', '.join(sorted(known_compile))})")
    pass_options = {name: {k: _values(v) for k, v in table.items()} for name, table in data.get("passes", {}).items()}
    acc = data.get("accuracy")
    if acc is not None and not acc.get("inputs"):
        raise VitcInputError(f"{source}: [accuracy] needs inputs = \"data.npz\" (the data the non-ideal "
                             "simulation is scored on)")
    return Grid(bases, hardware, targets, passes, pass_options, comp, acc, data.get("cluster"), source)


def load_grid(path: str | os.PathLike) -> Grid:
    """A grid file; relative paths in it (bases, calibration and accuracy data) are taken from its folder."""
    p = Path(path)
    data = read_toml(p)
    for section, key in (("hardware", "base"), ("compile", "calib"), ("compile", "tokenizer"), ("accuracy", "inputs")):
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        vals = [(str(p.parent / v) if isinstance(v, str) and (p.parent / v).is_file() else v) for v in _values(table[key])]
        table[key] = vals if isinstance(table[key], list) else vals[0]
    return parse_grid(data, p.name)


@dataclass(frozen=True)
class PassConfig:
    """One set of passes with one value per option: compiled once per sweep."""
    passes: str
    options: tuple[tuple[str, str, Any], ...]          # (pass, option, value)

    @property
    def id(self) -> str:
        return _digest([self.passes, [list(o) for o in self.options]])

    def tables(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name, key, value in self.options:
            out.setdefault(name, {})[key] = value
        return out


def pass_configs(grid: Grid) -> list[PassConfig]:
    out = []
    for spec in grid.passes:
        names = manager.select(spec)
        axes = [(n, k, vs) for n in names for k, vs in sorted(grid.pass_options.get(n, {}).items())]
        for combo in itertools.product(*[vs for _, _, vs in axes]):
            out.append(PassConfig(spec, tuple((n, k, v) for (n, k, _), v in zip(axes, combo))))
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def points(grid: Grid) -> list[dict]:
    """Every point of the grid, in a fixed order: pass configuration, target, base, hardware values."""
    keys = sorted(grid.hardware)
    out = []
    for pc in pass_configs(grid):
        for target in grid.targets:
            for base in grid.bases:
                for combo in itertools.product(*[grid.hardware[k] for k in keys]):
                    hw = dict(zip(keys, combo))
                    p = {"target": target, "base": base or DEFAULT_PRESET[target], "passes": pc.passes,
                         "pass_config": pc.id, "options": {f"{n}.{k}": v for n, k, v in pc.options}, "hw": hw}
                    p["id"] = _digest({k: p[k] for k in ("target", "base", "pass_config", "hw")}
                                      | {"accuracy": grid.accuracy})
                    out.append(p)
    for i, p in enumerate(out):
        p["index"] = i
    return out


def _spec(point: dict):
    return override(load_hw(point["base"]), point["hw"]) if point["hw"] else load_hw(point["base"])


# --------------------------------------------------------------------------- evaluation (runs in workers)
_MODELS: dict[str, onnx.ModelProto] = {}


def _set_models(models: dict[str, bytes]) -> None:
    """Worker initialiser: the compiled model of every pass configuration, parsed once per worker."""
    _MODELS.clear()
    _MODELS.update({k: onnx.load_from_string(v) for k, v in models.items()})


def evaluate_point(point: dict, context: dict, models: dict[str, bytes] | None = None) -> dict:
    """The figures of one point (a process-pool or Dask task)."""
    if models is not None and any(k not in _MODELS for k in models):
        _set_models(models)
    model = _MODELS[point["pass_config"]]
    spec = _spec(point)
    an = analyse(model, point["target"], spec, model_name=context["name"], options=context["backend_options"])
    t = an.totals
    row = {f: t[f] for f in FIGURES}
    share = rollups(an)["attention_share"]
    row.update({"attention_energy_share": share["energy"], "attention_latency_share": share["latency"]})
    row.update(context["fidelity"].get(point["pass_config"], {}))
    if context.get("accuracy") and spec.kind == "xbar":
        row.update(_nonideal_accuracy(model, spec, context))
    return row


def _nonideal_accuracy(model: onnx.ModelProto, spec, context: dict) -> dict:
    acc = context["accuracy"]
    data = load_dataset(acc["inputs"], model).take(acc.get("samples"))
    cfg = SimConfig.from_hw(spec, seed=context["seed"])
    sim = simulate_model(model, cfg, calib=data, calib_samples=min(data.size, 32)).model
    res = validate_models(model, sim, inputs=data, labels=bool(acc.get("labels", data.labels is not None)))
    o = res.outputs[0]
    out = {"sim_output_cosine": o.cosine_mean}
    if o.top1_agreement is not None:
        out["sim_agreement"] = o.top1_agreement
    if o.cand_accuracy is not None:
        out["sim_accuracy"] = o.cand_accuracy
    return out


# --------------------------------------------------------------------------- the driver
@dataclass
class SweepResult:
    table: Any                       # pandas.DataFrame
    computed: int
    reused: int
    front_end_runs: int
    files: list[Path]


def _need_table_libs():
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        raise VitcInputError("vitc sweep needs pandas and pyarrow: pip install 'vitc[sweep]'") from None


def _client(cluster):
    """A dask.distributed Client for ``cluster``: an address, a Client, or a jobqueue spec."""
    try:
        from distributed import Client
    except ImportError:
        raise VitcInputError("--cluster needs Dask: pip install 'vitc[sweep]'") from None
    if hasattr(cluster, "submit"):
        return cluster, False
    if isinstance(cluster, str):
        try:
            return Client(cluster, timeout="20s"), True
        except (OSError, TimeoutError) as exc:
            raise VitcInputError(f"cannot reach the Dask scheduler at {cluster}: {exc}") from None
    if isinstance(cluster, dict) and cluster.get("jobqueue"):
        spec = dict(cluster)
        kind = spec.pop("jobqueue")
        jobs = int(spec.pop("jobs", 1))
        try:
            import dask_jobqueue
        except ImportError:
            raise VitcInputError("a [cluster] jobqueue spec needs dask-jobqueue: pip install dask-jobqueue") from None
        cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}.get(kind)
        if cls is None:
            raise VitcInputError(f"[cluster] jobqueue '{kind}' (choose slurm, pbs, sge, lsf)")
        jq = getattr(dask_jobqueue, cls)(**spec)
        jq.scale(jobs=jobs)
        return Client(jq), True
    raise VitcInputError(f"--cluster: expected tcp://host:port (got {cluster!r})")


def run_sweep(model, grid: Grid | str | os.PathLike | dict, out: str | os.PathLike, *, cluster=None,
              workers: int | None = None, progress: Progress = SILENT) -> SweepResult:
    """Run (or resume) the sweep of ``grid`` on ``model`` into ``out`` (module docstring)."""
    _need_table_libs()
    grid = grid if isinstance(grid, Grid) else (parse_grid(grid) if isinstance(grid, dict) else load_grid(grid))
    out = check_outdir(out)
    if workers is not None and workers < 1:
        raise VitcInputError(f"--workers must be a positive integer (got {workers})")
    pts = points(grid)
    with progress.stage(f"checking {len(pts)} points"):
        for p in pts:                                # every hardware description is valid before any work
            _spec(p)
        cluster = cluster if cluster is not None else (grid.cluster or {}).get("address") or (
            grid.cluster if grid.cluster and grid.cluster.get("jobqueue") else None)
        comp = grid.compile
        base_plan = plan_compile(model, passes="none", target="none", calib=comp.get("calib"),
                                 calib_samples=comp.get("calib_samples"), seed=comp.get("seed", 0),
                                 tokenizer=comp.get("tokenizer"), preprocess=comp.get("preprocess", "imagenet"))
    cache = out / "cache"
    done_dir = out / "points"
    done = {p.stem for p in done_dir.glob("*.json")} if done_dir.is_dir() else set()
    todo = [p for p in pts if p["id"] not in done]
    front_end_runs = 0
    models: dict[str, bytes] = {}
    fidelity: dict[str, dict] = {}
    needed = {p["pass_config"] for p in todo}
    cm = None
    for pc in pass_configs(grid):
        if pc.id not in needed:
            continue
        cached = cache / f"{pc.id}.onnx"
        if cached.is_file() and (cache / f"{pc.id}.json").is_file():
            models[pc.id] = cached.read_bytes()
            fidelity[pc.id] = json.loads((cache / f"{pc.id}.json").read_text())
            continue
        if cm is None:
            cm = front_end(base_plan, progress)
            front_end_runs += 1
        target = next(p["target"] for p in pts if p["pass_config"] == pc.id)
        base = next(p["base"] for p in pts if p["pass_config"] == pc.id)
        with progress.stage(f"passes {pc.passes} {dict((f'{n}.{k}', v) for n, k, v in pc.options) or ''}".strip()):
            plan = plan_compile(base_plan.source, weights=base_plan.weights, passes=pc.passes, target=target, hw=base, calib=base_plan.calib,
                                calib_samples=comp.get("calib_samples"), seed=comp.get("seed", 0),
                                pass_tables=pc.tables(), name=base_plan.name)
            res = run_plan(plan, canonical=cm, render=False)
        blob = res.model.SerializeToString(deterministic=True)
        fid = _fidelity(res.compiled.records)
        write_outputs(cache, {f"{pc.id}.onnx": blob, f"{pc.id}.json": json.dumps(fid, sort_keys=True).encode()},
                      manifest=False)
        models[pc.id], fidelity[pc.id] = blob, fid
    backend_options = {k: comp[k] for k in ("batch", "seq_len") if k in comp}
    if cm is not None and "seq_len" not in backend_options and any(b.tokens_dynamic for b in cm.blocks):
        backend_options["seq_len"] = cm.blocks[0].tokens
    context = {"name": base_plan.name, "backend_options": backend_options, "fidelity": fidelity,
               "accuracy": grid.accuracy, "seed": comp.get("seed", 0)}
    computed = _evaluate(todo, context, models, done_dir, cluster, workers, progress)
    table = _table(pts, done_dir)
    files = write_outputs(out, _result_files(table, grid, pts), manifest=False)
    return SweepResult(table, computed, len(pts) - len(todo), front_end_runs, files)


def _fidelity(records) -> dict:
    out = {}
    for r in records:
        e2e = (r.fidelity or {}).get("end_to_end") or {}
        for k in ("output_cosine", "agreement", "accuracy"):
            if isinstance(e2e.get(k), (int, float)):
                out[f"fidelity_{k}"] = float(e2e[k])
        out["weights"] = r.weights
    return out


def _evaluate(todo: list[dict], context: dict, models: dict[str, bytes], done_dir: Path, cluster, workers,
              progress: Progress) -> int:
    if not todo:
        return 0
    done_dir.mkdir(parents=True, exist_ok=True)

    def store(p: dict, row: dict) -> None:
        write_outputs(done_dir, {f"{p['id']}.json": json.dumps(row, sort_keys=True).encode()}, manifest=False)
    bar = progress.bar(range(len(todo)), f"sweep: {len(todo)} points")
    it = iter(bar)
    if cluster is not None:
        client, owned = _client(cluster)
        try:
            blobs = client.scatter(models, broadcast=True)
            futures = {client.submit(evaluate_point, p, context, blobs, pure=False): p for p in todo}
            from distributed import as_completed as dask_completed
            for fut in dask_completed(futures):
                store(futures[fut], fut.result())
                next(it, None)
        finally:
            if owned:
                client.close()
        return len(todo)
    n = workers or min(len(todo), os.cpu_count() or 1)
    if n == 1:
        _set_models(models)
        for p in todo:
            store(p, evaluate_point(p, context))
            next(it, None)
        return len(todo)
    with ProcessPoolExecutor(max_workers=n, initializer=_set_models, initargs=(models,)) as pool:
        futures = {pool.submit(evaluate_point, p, context): p for p in todo}
        for fut in as_completed(futures):
            store(futures[fut], fut.result())
            next(it, None)
    return len(todo)


def _table(pts: list[dict], done_dir: Path):
    import pandas as pd
    rows = []
    for p in pts:
        f = done_dir / f"{p['id']}.json"
        if not f.is_file():
            continue
        row = {"point": p["index"], "target": p["target"], "base": p["base"], "passes": p["passes"]}
        row.update({f"opt.{k}": v for k, v in p["options"].items()})
        row.update({f"hw.{k}": v for k, v in p["hw"].items()})
        row.update(json.loads(f.read_text()))
        rows.append(row)
    return pd.DataFrame(rows)


def _result_files(table, grid: Grid, pts: list[dict]) -> dict[str, bytes]:
    import io
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    varied = [c for c in table.columns if (c.startswith(("hw.", "opt.")) or c in ("target", "base", "passes"))
              and table[c].astype(str).nunique() > 1]
    meta = {"schema": SCHEMA[0], "schema_version": SCHEMA[1], "grid": grid.source, "points": len(pts),
            "finished": int(len(table)), "varied": varied, "figures": list(FIGURES)}
    return {"results.parquet": buf.getvalue(), "results.csv": table.to_csv(index=False).encode(),
            "sweep.json": (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode(),
            "sweep.html": sweep_page(table, varied, grid.source).encode()}


# --------------------------------------------------------------------------- pages
def pareto(rows: list[dict], x: str, y: str, x_low: bool = True, y_low: bool = True) -> list[dict]:
    """The points no other point beats on both ``x`` and ``y`` (sorted by x)."""
    sx, sy = (1 if x_low else -1), (1 if y_low else -1)
    pts = sorted((r for r in rows if r.get(x) is not None and r.get(y) is not None),
                 key=lambda r: (sx * r[x], sy * r[y]))
    front, best = [], None
    for r in pts:
        if best is None or sy * r[y] < best:
            front.append(r)
            best = sy * r[y]
    return front


def sweep_page(table, varied: list[str], title: str) -> str:
    """One self-contained page: the Pareto fronts, points coloured by a varied parameter."""
    import html
    rows = table.to_dict("records")
    color = varied[0] if varied else None
    for r in rows:
        r["label"] = "<br>".join(f"{c} = {r[c]}" for c in varied) or f"point {r['point']}"
    page = plots.Page()
    figs = []
    quality = next((c for c in ("sim_accuracy", "sim_agreement", "fidelity_accuracy", "fidelity_agreement",
                                "fidelity_output_cosine", "sim_output_cosine") if c in table.columns
                    and table[c].notna().any()), None)
    if quality:
        figs.append(plots.scatter(f"{quality} vs EDAP", rows, "edap_j_s_mm2", quality, "EDAP (J·s·mm²)", quality,
                                  color, log_x=True, front=pareto(rows, "edap_j_s_mm2", quality, True, False)))
    figs.append(plots.scatter("Energy vs latency per image", rows, "latency_ns", "energy_pj", "latency (ns)",
                              "energy (pJ)", color, log_x=True, log_y=True, front=pareto(rows, "latency_ns", "energy_pj")))
    figs.append(plots.scatter("Area vs TOPS/W", rows, "tops_per_w", "area_mm2", "TOPS/W", "area (mm²)", color,
                              front=pareto(rows, "tops_per_w", "area_mm2", False, True)))
    shown = ["point"] + varied + [c for c in ("edap_j_s_mm2", "energy_pj", "latency_ns", "area_mm2", "tops_per_w",
                                              quality) if c]
    best = sorted(rows, key=lambda r: r["edap_j_s_mm2"])[:20]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>vitc sweep — {html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>",
             f"<h1>vitc sweep — {html.escape(title)}</h1>",
             f"<p class='note'>{len(rows)} points; varied: {html.escape(', '.join(varied) or 'nothing')}; colour: "
             f"{html.escape(color or '–')}; dotted line: the Pareto front; hover a point for its parameters.</p>"]
    parts += [page.html(f) for f in figs]
    parts += ["<h2>Lowest EDAP</h2>", html_table(shown, [[r.get(c) for c in shown] for r in best]),
              "</body></html>\n"]
    return "\n".join(parts)


__all__ = ["Grid", "parse_grid", "load_grid", "points", "pass_configs", "run_sweep", "evaluate_point", "pareto",
           "sweep_page", "SweepResult"]
