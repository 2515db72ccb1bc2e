"""``--target hybrid``: static-weight products on crossbars, everything else on a systolic unit.

Naming the two presets: ``--hw XBAR+SYSTOLIC`` (either order), e.g.
``vitc compile m.onnx --target hybrid --hw rram-128+vitality``. Each part may be a preset
name or a TOML file (``my_xbar.toml+vitality``). :func:`vitc.core.hardware.load_hw`
returns the combined description (:func:`vitc.core.hardware.combine`): ``kind = "hybrid"``, the
crossbar description's sections at the top level (so every crossbar field keeps its
dotted name, and the schedule runs at the crossbar preset's clock), and the systolic
description under ``parts.systolic``.

Mapping
-------
* ``mvm`` (MatMul/Gemm with a constant operand, Conv: projections, MLP, patch embedding,
  head) and ``lstm`` → crossbars (:class:`~vitc.backends.xbar.XbarModel`, weights stay
  programmed; ``attention_products.mode`` of the crossbar preset is ignored: activation
  products never go to crossbars here);
* ``act_product`` (QKᵀ, S·V, K̂ᵀV, Q·G outside recognised cores), the attention cores
  (``ai.vitc::Attention`` / ``ai.vitc::TaylorAttention``, costed as units) and all
  element-wise / special-function work → the systolic unit
  (:class:`~vitc.backends.systolic.SystolicModel`).

Energy: the crossbar preset's ``post_layout_energy_factor`` applies to the crossbar part
only (the systolic model hands the flow its energies divided by the factor). Activations
move between the crossbar tiles and the systolic unit over the crossbar chip's on-chip
interconnect (its ``interconnect.energy_pj_per_bit`` × the systolic precision per word),
not through DRAM; nothing static is left for DRAM unless an op outside the crossbars has
a constant operand. Report
components: crossbar energies as in the xbar target; the systolic unit's arrays and
processors under ``digital``, its SRAM under ``buffer``, its DRAM under ``interconnect``.
Area: crossbar tiles + the systolic unit (SA and processors under ``digital``). LSTM gates
(rare in ViTs) keep the crossbar preset's special-function energies.
"""
from __future__ import annotations

from vitc.backends.cost import Target
from vitc.backends.digital import DigitalModel
from vitc.core.hardware import HardwareSpec
from vitc.backends.partition import LSTM, MVM
from vitc.backends.systolic import HYBRID_COMPONENTS, SystolicModel, systolic_hw
from vitc.backends.xbar import XbarModel

def _hybrid_models(spec: HardwareSpec, options: dict):
    shw = systolic_hw(spec.part("systolic"))
    digital = DigitalModel(spec, act_products=False)   # LSTM gate costs only
    xbar = XbarModel(spec, digital, options.get("xbar_traces"))
    xbar.kinds = (MVM, LSTM)
    link = spec.get("interconnect.energy_pj_per_bit")
    sysm = SystolicModel(shw, options, sched_freq_ghz=spec.freq_ghz, kinds=("act_product", "sfu", "vector"),
                         components=HYBRID_COMPONENTS,
                         link_pj_per_word=None if link is None else link * shw.hw.bits)
    return [xbar, sysm]


TARGET = Target("hybrid", ("hybrid",), "rram-128+vitality", _hybrid_models,
                "static MVMs on crossbars, the rest on a systolic unit (--hw XBAR+SYSTOLIC)")

