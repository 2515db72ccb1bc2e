"""Analytic cycle model of one GEMM on an R x C systolic array (SCALE-Sim semantics).

No graph knowledge here: only the product ``C[M x N] = A[M x K] . B[K x N]`` and
the array.  Naming follows SCALE-Sim v3's GEMM mode: A is the *ifmap*, B the
*filter*, C the *ofmap*; a topology row ``name, M, N, K,`` means exactly this
product (see ``tools/scalesim_crosscheck.py``).

Dataflows (SCALE-Sim's names; ``T`` is the length streamed through the array per fold)

====  ======================  ============================  ==============  =====
 df   stationary in the PEs   array rows x cols hold        folds           T
====  ======================  ============================  ==============  =====
 ws   B (weights)             K x N                         ceil(K/R)ceil(N/C)  M
 is   A (inputs)              K x M  (A transposed)         ceil(K/R)ceil(M/C)  N
 os   C (outputs)             M x N                         ceil(M/R)ceil(N/C)  K
====  ======================  ============================  ==============  =====

The ViTALiTy paper's "input stationary / down-forward accumulation" (Fig. 8a: the
*right* operand B stays in the PEs, rows of A stream in from the left, partial sums
flow down) is SCALE-Sim's ``ws`` with B as the stationary operand.

Modes
-----
``scalesim``
    SCALE-Sim v3.0.0 zero-stall "Total Cycles" (COMPUTE_REPORT.csv), folds run back to
    back with no overlap::

        ws: F * (2R + C + M - 2) - 1
        is: F * (2R + C + N - 2) - 1
        os: F * ( R + C + K - 2) - 1

    Per fold: R cycles to shift the stationary operand in (ws/is only), T cycles of
    streaming, R-1 cycles of input skew and C-1 cycles of output drain; the trailing
    -1 is SCALE-Sim's cycle indexing.  Verified exactly against the real tool for
    every record in ``tests/fixtures/scalesim/recorded_cycles.json``.

``double-buffered``
    Hardware with shadow registers for the stationary operand (ws/is) or for the
    finished outputs (os): the next fold's load (or the previous fold's drain out of
    the PEs) happens while the current fold streams.  The first fold pays the full
    SCALE-Sim cost, every further fold only ``max(T, L)`` where ``L`` is the time to
    swap the stationary tile (``L = R`` rows shifted in, or ``R`` rows of outputs
    shifted out for os)::

        cycles = (P + T) + (F - 1) * max(T, L) - 1,   P = 2R + C - 2 (ws/is), R + C - 2 (os)

    Equal to ``scalesim`` for one fold, never above it, never below
    ``MACs/(R*C)`` (except a 1x1 ``os`` array, where SCALE-Sim's own count is
    ``F*K - 1``).

Stalls (optional)
-----------------
``stall_cycles`` is a roofline-style bound, not a memory simulation: given SRAM
sizes (words per operand buffer) and a DRAM bandwidth (words/cycle), every operand
that does not fit its buffer is re-fetched from DRAM once per outer fold in which it
is re-read (the SRAM read counts below); operands that fit are fetched once.  The
DRAM words are spread evenly over the folds; a fold stalls by
``max(0, ceil(words_per_fold / bw) - cycles_per_fold)``.  With enough SRAM and
bandwidth this is zero, like SCALE-Sim with big buffers.

SRAM traffic (words, per GEMM; identical to SCALE-Sim's DETAILED_ACCESS_REPORT
except the os-output quirk noted below)

====  ====================  ====================  ====================  ===================
 df   A reads               B reads               C writes              C reads (psum)
====  ====================  ====================  ====================  ===================
 ws   ceil(N/C) * M*K       K*N                   ceil(K/R) * M*N       (ceil(K/R)-1) M*N
 is   M*K                   ceil(M/C) * K*N       ceil(K/R) * M*N       (ceil(K/R)-1) M*N
 os   ceil(N/C) * M*K       ceil(M/R) * K*N       M*N                   0
====  ====================  ====================  ====================  ===================

SCALE-Sim does not count partial-sum read-back (last column) and, for ``os``, adds
``R + C`` spurious writes per fold (``systolic_compute_os.py`` adds
``shape[0] + shape[1]`` of each fold's output tile);
:meth:`GemmCost.scalesim_sram_counts` reproduces its numbers exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil

DATAFLOWS = ("ws", "is", "os")
MODES = ("scalesim", "double-buffered")


@dataclass(frozen=True)
class GemmCost:
    """Cost of ``C[M x N] = A[M x K] . B[K x N]`` on an ``rows x cols`` array.

    Cycle fields are in array clock cycles; traffic fields are in words (one
    operand element each).
    """

    M: int
    N: int
    K: int
    rows: int
    cols: int
    dataflow: str
    mode: str
    folds_row: int            #: folds along the array-row dimension
    folds_col: int            #: folds along the array-column dimension
    stream_len: int           #: T, cycles each fold streams operands
    fold_cycles: int          #: cycles of one isolated fold (SCALE-Sim, no overlap)
    compute_cycles: int       #: zero-stall cycles of the whole GEMM in ``mode``
    stall_cycles: int = 0     #: extra cycles from the optional DRAM roofline bound
    sram_reads: dict = field(default_factory=dict)    #: {"A","B","C"} words read
    sram_writes: dict = field(default_factory=dict)   #: {"C"} words written
    dram_reads: dict = field(default_factory=dict)    #: {"A","B"} words (stall model)
    dram_writes: dict = field(default_factory=dict)   #: {"C"} words (stall model)

    @property
    def folds(self) -> int:
        """Number of tiles (folds) the GEMM is cut into."""
        return self.folds_row * self.folds_col

    @property
    def cycles(self) -> int:
        """Total cycles = compute + stall."""
        return self.compute_cycles + self.stall_cycles

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates, M*N*K."""
        return self.M * self.N * self.K

    @property
    def utilization(self) -> float:
        """MACs / (R * C * cycles), SCALE-Sim's "Overall Util" as a fraction."""
        return self.macs / (self.rows * self.cols * self.cycles) if self.cycles else 0.0

    @property
    def mapping_efficiency(self) -> float:
        """Mean fraction of PEs that hold a useful stationary element per fold."""
        return self.macs / (self.folds * self.rows * self.cols * self.stream_len)

    def scalesim_sram_counts(self) -> dict:
        """SRAM counts exactly as SCALE-Sim 3.0.0 reports them.

        Returns ``{"ifmap_reads", "filter_reads", "ofmap_writes"}`` (words); differs
        from :attr:`sram_writes` only for ``os`` (its R+C-per-fold artefact).
        """
        writes = self.sram_writes["C"]
        if self.dataflow == "os":
            writes += self.folds * (self.rows + self.cols)
        return {"ifmap_reads": self.sram_reads["A"], "filter_reads": self.sram_reads["B"],
                "ofmap_writes": writes}


def _check(M: int, N: int, K: int, rows: int, cols: int, dataflow: str, mode: str) -> None:
    for name, v in (("M", M), ("N", N), ("K", K), ("rows", rows), ("cols", cols)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def fold_geometry(M: int, N: int, K: int, rows: int, cols: int, dataflow: str):
    """Return ``(folds_row, folds_col, T, prologue)`` for one dataflow.

    ``T`` is the streamed length per fold, ``prologue`` the per-fold fixed cost
    (``2R + C - 2`` for ws/is: load + skew + drain; ``R + C - 2`` for os: skew +
    drain), so an isolated fold takes ``prologue + T`` cycles.
    """
    R, C = rows, cols
    if dataflow == "ws":
        return ceil(K / R), ceil(N / C), M, 2 * R + C - 2
    if dataflow == "is":
        return ceil(K / R), ceil(M / C), N, 2 * R + C - 2
    return ceil(M / R), ceil(N / C), K, R + C - 2


def sram_traffic(M: int, N: int, K: int, rows: int, cols: int, dataflow: str):
    """SRAM words ``(reads, writes)`` of one GEMM; see the module table."""
    fr, fc, _, _ = fold_geometry(M, N, K, rows, cols, dataflow)
    if dataflow == "ws":      # A re-streamed per column fold; psums per row fold
        reads = {"A": fc * M * K, "B": K * N, "C": (fr - 1) * M * N}
        writes = {"C": fr * M * N}
    elif dataflow == "is":    # B re-streamed per column fold (fc = ceil(M/C))
        reads = {"A": M * K, "B": fc * K * N, "C": (fr - 1) * M * N}
        writes = {"C": fr * M * N}
    else:                     # os: A per column fold, B per row fold, C once
        reads = {"A": fc * M * K, "B": fr * K * N, "C": 0}
        writes = {"C": M * N}
    return reads, writes


def _stalls(M, N, K, dataflow, folds, per_fold_cycles, sram_reads,
            sram_words, dram_bw):
    """Roofline-style stall cycles; see module docstring.  Returns (stall, dram_r, dram_w)."""
    if dram_bw is None:
        return 0, {}, {}
    if dram_bw <= 0:
        raise ValueError("dram_bw must be > 0 words/cycle")
    size = {"A": M * K, "B": K * N, "C": M * N}
    cap = sram_words or {}
    dram_r = {}
    for op in ("A", "B"):
        fits = cap.get(op) is None or size[op] <= cap[op]
        dram_r[op] = size[op] if fits else sram_reads[op]
    fits_c = cap.get("C") is None or size["C"] <= cap["C"]
    # a C buffer too small spills partial sums: write every psum, read them back
    dram_w = {"C": size["C"] if fits_c else size["C"] + sram_reads["C"]}
    extra_c_reads = 0 if fits_c else sram_reads["C"]
    words = dram_r["A"] + dram_r["B"] + dram_w["C"] + extra_c_reads
    per_fold = ceil(words / folds / dram_bw)
    stall = folds * max(0, per_fold - per_fold_cycles)
    return stall, dram_r, dram_w


def gemm_cost(M: int, N: int, K: int, rows: int, cols: int, dataflow: str = "ws",
              mode: str = "scalesim", *, sram_words: dict | None = None,
              dram_bw: float | None = None) -> GemmCost:
    """Cost breakdown of ``C[M x N] = A[M x K] . B[K x N]`` on an ``rows x cols`` array.

    Args:
        M, N, K: GEMM dimensions (elements).
        rows, cols: systolic array height R and width C (PEs).
        dataflow: ``"ws"``, ``"is"`` or ``"os"`` (SCALE-Sim names, see module doc).
        mode: ``"scalesim"`` (exact SCALE-Sim v3 zero-stall count) or
            ``"double-buffered"`` (fold fill/drain overlapped).
        sram_words: optional ``{"A": words, "B": words, "C": words}`` buffer sizes
            for the stall model; a missing key means "fits".
        dram_bw: optional DRAM bandwidth in words/cycle; ``None`` = no stall model.
    """
    _check(M, N, K, rows, cols, dataflow, mode)
    fr, fc, T, pro = fold_geometry(M, N, K, rows, cols, dataflow)
    folds = fr * fc
    fold_cycles = pro + T
    if mode == "scalesim":
        compute = folds * fold_cycles - 1
        steady = fold_cycles
    else:
        steady = max(T, rows)  # swap of the stationary tile takes R cycles
        compute = fold_cycles + (folds - 1) * steady - 1
    reads, writes = sram_traffic(M, N, K, rows, cols, dataflow)
    stall, dram_r, dram_w = _stalls(M, N, K, dataflow, folds, steady, reads,
                                    sram_words, dram_bw)
    return GemmCost(M=M, N=N, K=K, rows=rows, cols=cols, dataflow=dataflow, mode=mode,
                    folds_row=fr, folds_col=fc, stream_len=T, fold_cycles=fold_cycles,
                    compute_cycles=compute, stall_cycles=stall, sram_reads=reads,
                    sram_writes=writes, dram_reads=dram_r, dram_writes=dram_w)


def gemm_cycles(M: int, N: int, K: int, rows: int, cols: int, dataflow: str = "ws",
                mode: str = "scalesim", **stall_kw) -> int:
    """Total cycles of ``C[M x N] = A[M x K] . B[K x N]`` on an ``rows x cols`` array.

    ``mode="scalesim"`` equals SCALE-Sim v3.0.0's zero-stall "Total Cycles".
    Keyword arguments ``sram_words`` / ``dram_bw`` enable the stall bound
    (see :func:`gemm_cost`).
    """
    return gemm_cost(M, N, K, rows, cols, dataflow, mode, **stall_kw).cycles
