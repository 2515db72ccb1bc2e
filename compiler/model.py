"""The compiled model: the object that travels from the front end through passes to backends."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx_graphsurgeon as gs

from vitc.compiler.blocks import EncoderBlock
from vitc.compiler.recognize import Unrecognised


@dataclass
class PassRecord:
    """What a pass did. ``weights``: trained / fitted / loaded / untrained / none."""
    name: str
    blocks: list[int]
    weights: str = "none"
    fidelity: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)   # extra OUTDIR files (name -> bytes); not in to_dict

    def to_dict(self) -> dict:
        return {"name": self.name, "blocks": self.blocks, "weights": self.weights,
                "fidelity": self.fidelity, "details": self.details}


@dataclass
class CompiledModel:
    graph: gs.Graph
    opset: int
    name: str
    source: Path | None
    blocks: list[EncoderBlock]
    unrecognised: list[Unrecognised]
    normalized: dict[str, int]
    external_data: bool = False
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    records: list[PassRecord] = field(default_factory=list)
    node_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    original: onnx.ModelProto | None = None   # the normalised original, for calibration runs

    def node(self, name: str) -> gs.Node:
        for n in self.graph.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def tensor(self, name: str) -> gs.Tensor:
        return self.graph.tensors()[name]

    def tag(self, node_name: str, block: int | None, role: str) -> None:
        """Attach ``vitc.block``/``vitc.role`` metadata to a node (emitted as metadata_props)."""
        meta = {"vitc.role": role}
        if block is not None:
            meta["vitc.block"] = str(block)
        self.node_meta[node_name] = meta
