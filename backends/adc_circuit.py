"""A crossbar's read path as NeuroSim V1.4 models it: current-mode multilevel sense amplifier
(MLSA, the flash-like ADC of ``MultilevelSenseAmp.cpp``), its encoder, and the word-line charge of
a parallel read — as equations in the ADC's levels, the array's rows and columns, the column
muxing, and the data (column resistances and active rows).

Used by :mod:`vitc.backends.xbar` when a preset has an ``[adc_circuit]`` section (``neurosim-v14``).
The circuit constants there (gate and junction capacitances of the sense amp's minimum-size
transistors, wire capacitance per cell, standard-cell height and poly pitch, the device's on/off
and access resistances, NeuroSim's fitted column-power and column-latency laws for the node) are
NeuroSim's own at 22 nm, printed by ``tools/neurosim_mlsa_probe.cpp`` (which links NeuroSim's
objects and evaluates its functions); ``benchmarks/neurosim_adc_check.py`` compares this module
with that probe. Nothing here is fitted to a network's result.

Equations (L = 2^adc_bits levels, n_sa = cols / cols_per_adc sense amps, Vr read voltage,
Vdd supply; C_col = rows · C_bl per row):

* reference resistances R_i = 1 / (G0 · (1 − i/L)), i = 0..L−2, G0 = rows_parallel / R_on;
* column sensing time T = max(τ(R_{L−2}), τ(R_1)), τ the node's fitted latency law plus NeuroSim's
  column-capacitance correction above its threshold; an ADC's latency is T · cols_per_adc;
* energy of one conversion of a column of resistance R:
  (L−1)·E_sw + T·(P(R') + Σ_{i=1}^{L−3} P(R_i')/L), with P(r) = (L−1)·p(r) the node's fitted column
  power (p piecewise linear/logarithmic in r), r' = r·0.5/Vr, and
  E_sw = C_col·Vr²/L [NeuroSim's integer 1/(L−1) makes the other half of this term zero]
       + (2·Cg_n + (Cj_n+Cg_n)/(L−1) + (Cj_n+Cg_n)/L)·Vr²
       + (2·Cg_p + Cg_n + 3·Cg_p + 3·Cg_n + 3·(Cj_p+Cj_n) + Cj_p + Cg_p + Cg_n)·Vdd²;
* area of the sense amps: (L−1)·n_sa·(9·A_nmos + (rows·h_cell)·w_cell/L) (current mirrors plus
  a dummy reference column shared by L levels); the encoder: n_sa encoders of (L−1) inverter +
  NAND2 pairs and log2 L NAND(L/2) gates, packed in rows under the array (NeuroSim's layout rule);
* word-line energy of one crossbar read: cols_per_adc · (cols · C_wl per column) · V_access² · active
  rows (NeuroSim books it in its ADC figure, and so does vitc's ``adc`` component with this model);
* a column's resistance in a read: 1 / Σ_active rows 1/(R_cell + R_access), R_cell = 1/(G_off +
  level·(G_on − G_off)) for a cell at ``level`` in [0, 1] (R_on for a 1-bit cell, R_off for a 0-bit;
  wire resistance, < 1 % here, is left out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReadPath:
    """The read path of one crossbar configuration. Units: ohm, farad, volt, second, µm², joule."""

    levels: int
    rows: int
    cols: int
    cols_per_adc: int
    rows_parallel: int
    c: dict                       # the preset's [adc_circuit] section

    # ------------------------------------------------------------------ references and timing
    @property
    def n_sa(self) -> int:
        return max(1, self.cols // self.cols_per_adc)

    def reference_resistances(self) -> np.ndarray:
        g0 = self.rows_parallel / self.c["ron_ohm"]
        i = np.arange(self.levels - 1, dtype=np.float64)
        return 1.0 / (g0 * (1.0 - i / self.levels))

    def _tau(self, r: float) -> float:
        c = self.c
        a1, b1, a2, b2 = c["latency_fit"]
        t = a1 * math.log(r) + b1 if r < c["latency_break_ohm"] else a2 * r + b2
        thr = c["latency_cap_threshold_ohm"]
        if r > thr:
            ccol = self.rows * c["bitline_cap_ff_per_row"] * 1e-15 + c["cg_n_ff"] * 1e-15 * (self.levels - 2)
            ref = c["latency_ref_cap_ff"] * 1e-15
            t += c["latency_cap_slope_s"] / (c["latency_cap_r2_ohm"] - thr) * (r - thr) * (ccol - ref) / ref
        return t

    def column_time_s(self) -> float:
        """Sensing time of one column conversion T (s)."""
        rref = self.reference_resistances()
        if len(rref) < 2:
            return self._tau(float(rref[-1]))
        return max(self._tau(float(rref[-1])), self._tau(float(rref[1])))

    def adc_latency_ns(self) -> float:
        """One ADC converting its cols_per_adc columns (ns)."""
        return self.column_time_s() * self.cols_per_adc * 1e9

    # ------------------------------------------------------------------ energy
    def column_power_w(self, r: np.ndarray) -> np.ndarray:
        """P(r): the node's fitted column power (W) for column resistances ``r`` (any shape)."""
        c = self.c
        r = np.asarray(r, np.float64) * (0.5 / c["read_voltage"])
        k1, b1, k2, b2, k3, b3 = c["column_power_fit"]
        lo, hi = c["column_power_breaks_ohm"]
        with np.errstate(divide="ignore"):
            lr = np.log(np.maximum(r, 1e-30))
        p = np.where(r < lo, k1 * r + b1, np.where(r < hi, k2 * lr + b2, k3 * lr + b3))
        return np.maximum(p * (self.levels - 1), 0.0)

    def switching_energy_j(self) -> float:
        """E_sw: the fixed switching energy per level of one conversion (J)."""
        c, L = self.c, self.levels
        f = 1e-15
        cgn, cjn, cgp, cjp = c["cg_n_ff"] * f, c["cj_n_ff"] * f, c["cg_p_ff"] * f, c["cj_p_ff"] * f
        vr, vdd = c["read_voltage"], c["vdd"]
        ccol = self.rows * c["bitline_cap_ff_per_row"] * f
        e = ccol * vr * vr / L
        e += (2 * cgn + (cjn + cgn) / max(L - 1, 1) + (cjn + cgn) / L) * vr * vr
        e += (2 * cgp + cgn + 3 * cgp + 3 * cgn + 3 * (cjp + cjn) + cjp + cgp + cgn) * vdd * vdd
        return e

    def reference_power_w(self) -> float:
        rref = self.reference_resistances()
        return float(self.column_power_w(rref[1:-1]).sum()) / self.levels

    def conversion_energy_pj(self, r: np.ndarray) -> np.ndarray:
        """Energy of one column conversion for column resistances ``r`` (pJ, same shape)."""
        t = self.column_time_s()
        e = (self.levels - 1) * self.switching_energy_j() + t * (self.column_power_w(r) + self.reference_power_w())
        return e * 1e12

    def wordline_energy_pj_per_row(self) -> float:
        """Word-line charge for one active row in one crossbar read (all mux phases), pJ."""
        c = self.c
        return self.cols_per_adc * self.cols * c["wordline_cap_ff_per_col"] * 1e-15 * c["access_voltage"] ** 2 * 1e12

    # ------------------------------------------------------------------ area
    def sense_amp_area_um2(self) -> float:
        c, L = self.c, self.levels
        a_nmos = c["gate_height_um"] * 2 * c["gate_pitch_um"]
        dummy = self.rows * c["cell_height_um"] * c["cell_width_um"] / L
        return (L - 1) * self.n_sa * (9 * a_nmos + dummy)

    def encoder_area_um2(self) -> float:
        c, L = self.c, self.levels
        h, p = c["gate_height_um"], c["gate_pitch_um"]
        w_inv, w_nand2 = 2 * p, 3 * p
        w_nand_l = (math.ceil(L / 2) + 1) * p
        w_enc = w_inv + w_nand2 + w_nand_l
        h_enc = ((w_inv * h + w_nand2 * h) * (L - 1) + w_nand_l * math.ceil(math.log2(L)) * h) / w_enc
        width_array = self.cols * c["array_col_pitch_um"]
        per_row = min(max(1, math.ceil(width_array / w_enc)), self.n_sa)
        return max(width_array, w_enc) * h_enc * math.ceil(self.n_sa / per_row)

    def adc_area_um2(self) -> float:
        """Area of one ADC (sense amp and encoder share), µm²."""
        return (self.sense_amp_area_um2() + self.encoder_area_um2()) / self.n_sa

    # ------------------------------------------------------------------ data
    def column_resistance(self, in_bits: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Column resistances of crossbar reads.

        ``in_bits`` [reads, rows] 0/1 input bit-planes applied to one row tile; ``levels``
        [rows, cols] cell states of that tile in [0, 1] (0/1 for 1-bit cells). Returns [reads, cols]
        ohm (1e10 for a column with no active row, as NeuroSim)."""
        c = self.c
        g_on, g_off = 1.0 / c["ron_ohm"], 1.0 / c["roff_ohm"]
        g_cell = 1.0 / (1.0 / (np.asarray(levels, np.float64) * (g_on - g_off) + g_off) + c["access_ohm"])
        g = in_bits.astype(np.float64) @ g_cell
        n_add = max(1, math.ceil(self.rows / self.rows_parallel))
        g = g / n_add
        with np.errstate(divide="ignore"):
            return np.where(g > 0, 1.0 / np.maximum(g, 1e-300), 1e10)


def read_path(spec) -> ReadPath | None:
    """The preset's read path, or None where it has no ``[adc_circuit]``."""
    if spec.get("adc_circuit.model") != "neurosim-mlsa":
        return None
    xb = spec.section("crossbar")
    rows = xb["rows"]
    return ReadPath(2 ** xb["adc_bits"], rows, xb["cols"], xb["cols_per_adc"],
                    min(xb["rows_parallel"] or rows, rows), spec.section("adc_circuit"))


__all__ = ["ReadPath", "read_path"]
