"""Every ``ai.vitc`` custom op, registered: import this module to emit or cost them.

The machinery (:data:`REGISTRY`, overload selection, declared work) is in
:mod:`vitc.runtime.op_registry`; each op lives in its own module and registers itself:
``Attention`` (:mod:`vitc.runtime.attention_op`), ``TaylorAttention``
(:mod:`vitc.runtime.taylor_ops`), ``FactorizedAttention``/``SeparableAttention``/
``LinearAttention`` (:mod:`vitc.runtime.linear_attention_ops`).
"""
from __future__ import annotations

from vitc.runtime import attention_op, linear_attention_ops, taylor_ops
from vitc.runtime.op_registry import (DOMAIN, DOMAIN_VERSION, REGISTRY, WORK, Step, custom_op, functions_for,
                                      overload_for, work)

OPS = {attention_op.OP_TYPE: attention_op, taylor_ops.OP_TYPE: taylor_ops,
       **{t: linear_attention_ops for t in linear_attention_ops.OP_TYPES}}

__all__ = ["DOMAIN", "DOMAIN_VERSION", "REGISTRY", "WORK", "OPS", "Step", "custom_op", "functions_for",
           "overload_for", "work"]
