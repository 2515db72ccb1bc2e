"""The non-ideal crossbar simulator, in one place.

* :mod:`.arith` — what a crossbar MVM computes on the chip (configuration, weight
  programming, the numpy reference);
* :mod:`.xbar_op` — the ``ai.vitc::XbarMatMul`` function body that onnxruntime runs;
* :mod:`.simulate` — a graph with every static-weight MVM replaced by that op;
* :mod:`.sweep` — accuracy against ADC resolution on labelled data.
"""
