"""Shared fixtures: small zoo models and the committed exporter fixtures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXPORTERS = FIXTURES / "exporters"
REFERENCE = ROOT / "models" / "reference"


def exporter_manifest() -> dict:
    path = EXPORTERS / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """DeiT-Tiny geometry with 2 blocks at 64×64 (17 tokens): fast to compile and run."""
    from vitc.core.io import model_bytes, write_outputs
    from vitc.compiler.zoo import build_vit
    d = tmp_path_factory.mktemp("zoo")
    write_outputs(d, model_bytes(build_vit("deit-tiny", img_size=64, patch=16, depth=2), "tiny.onnx", False))
    return d / "tiny.onnx"


def assert_offline_html(html: str) -> str:
    """Assert a report page loads nothing from outside itself; returns the markup without script bodies."""
    import re
    assert not re.search(r"<script[^>]*\bsrc\s*=", html)                    # every script inline
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)      # the page around the scripts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)
    assert "@import" not in markup and "url(http" not in markup
    return markup
