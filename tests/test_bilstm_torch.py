"""bilstm (FAR) pass with torch: ONNX LSTM block vs the torch module it came from, FAR
checkpoints, and a (tiny) block-wise distillation."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vitc.passes.bilstm_graph import block_model  # noqa: E402
from vitc.passes.bilstm_weights import choose_units, group_norms, load_weights  # noqa: E402
from vitc.passes.bilstm_distill import make_module, torch_module_from_block  # noqa: E402
from vitc.runtime.session import open_session  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _compare(module, block, shapes=((2, 17), (1, 65), (4, 3))) -> float:
    sess = open_session(block_model(block))
    worst = 0.0
    for b, n in shapes:
        x = torch.randn(b, n, module.embed_dim, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = module(x).numpy()
        worst = max(worst, float(np.abs(sess.run(None, {"x": x.numpy()})[0] - ref).max()))
    return worst


def test_onnx_block_matches_torch_module():
    torch.manual_seed(0)
    m = make_module(64, 4)
    with torch.no_grad():                      # larger-than-init weights exercise the nonlinearity
        for p in m.parameters():
            p.mul_(3)
    m.apply_masks()
    assert _compare(m, m.to_block()) <= 1e-5


def test_pruned_onnx_block_matches_masked_torch_module():
    torch.manual_seed(1)
    m = make_module(64, 4)
    keep = choose_units(group_norms(m.to_block()), ratio=0.4)
    mask = torch.zeros(2, 64)
    for hd in range(4):
        for di in range(2):
            mask[di, hd * 16 + torch.as_tensor(keep[hd][di])] = 1
    m.set_unit_mask(mask)
    block = m.to_block()
    assert sum(map(sum, block.hidden_sizes())) == 128 - 52
    assert _compare(m, block) <= 1e-5
    # and back: a module rebuilt from the pruned per-head weights computes the same
    assert _compare(torch_module_from_block(block), block) <= 1e-5


def test_far_checkpoint_loads(tiny_zoo, tmp_path):
    from vitc.compiler.frontend import read_model
    cm = read_model(tiny_zoo)
    torch.manual_seed(2)
    m = make_module(192, 3)
    sd = {f"blocks.0.attn.{k}": v for k, v in m.state_dict().items() if not k.startswith(("mask", "unit"))}
    sd["blocks.0.attn.post_proj.weight"] = torch.zeros(192, 192)
    torch.save({"model": sd}, tmp_path / "far.pth")
    loaded, fmt = load_weights(tmp_path / "far.pth", cm)
    assert fmt == "far-state-dict" and list(loaded) == [0]
    assert _compare(m, loaded[0], shapes=((2, 17),)) <= 1e-5


def test_distillation_is_reproducible_and_prunes():
    from vitc.pipeline import compile_model
    from conftest import EXPORTERS
    small = EXPORTERS / "timm_legacy_sdpa_op17.onnx"       # C 64, 4 heads, 17 tokens
    if not small.is_file():
        pytest.skip("exporter fixture missing")
    opts = {"epochs": 2, "bilstm_batch": 16, "prune_ratio": 0.3, "bilstm_finetune_epochs": 1,
            "bilstm_blocks": "1"}
    runs = [compile_model(small, passes="bilstm", target="none", options=opts, seed=3) for _ in range(2)]
    recs = [r.compiled.records[0] for r in runs]
    assert recs[0].weights == "trained" and recs[0].blocks == [1]
    assert recs[0].fidelity == recs[1].fidelity
    a = {t.name: t for t in runs[0].model.graph.initializer}
    b = {t.name: t for t in runs[1].model.graph.initializer}
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert recs[0].details["hidden_units"]["removed_fraction"] >= 0.3
    info = recs[0].details["blocks"]["1"]
    assert info["epochs_run"] == 2 and "before_pruning" in info and info["target_crosscheck_rel_err"] < 1e-4
    assert info["augment"].startswith("mixup") and info["teacher_rel_err"] < 1e-4   # teacher attention == target
    ops = [n.op_type for n in runs[0].model.graph.node]
    assert ops.count("Attention") == 1 and ops.count("LSTM") >= 3     # block 0 kept its attention


def test_a_time_budget_shortens_each_blocks_decay_to_the_epochs_that_fit():
    from vitc.pipeline import compile_model
    from conftest import EXPORTERS
    small = EXPORTERS / "timm_legacy_sdpa_op17.onnx"
    if not small.is_file():
        pytest.skip("exporter fixture missing")
    opts = {"epochs": 10000, "bilstm_batch": 16, "bilstm_blocks": "1", "time_budget": 6.0}
    info = compile_model(small, passes="bilstm", target="none", options=opts).compiled.records[0].details["blocks"]["1"]
    assert info["epochs"] == 10000 and 1 <= info["epochs_planned"] < 10000
    assert info["epochs_run"] <= info["epochs_planned"]


def test_masked_text_model_gets_packed_lstms_that_ignore_padding(tmp_path):
    """BiLSTM on a padded text model: LSTMs run over each sentence's real tokens (ONNX
    sequence_lens from the key-padding mask), so a sentence's logits do not depend on how much
    padding follows it — as with the original attention."""
    import onnx
    from conftest import EXPORTERS, FIXTURES
    from vitc.pipeline import compile_model
    bert = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"
    res = compile_model(bert, passes="bilstm", calib=FIXTURES / "text" / "sentences.txt",
                        tokenizer=FIXTURES / "text" / "vocab.txt", target="none", options={"epochs": 2})
    model = res.model
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert lstms and all(len(n.input) >= 5 and n.input[4] for n in lstms)
    info = res.compiled.records[0].details["blocks"]
    assert all("packed" in b for b in info.values())
    sess = open_session(model)
    ids = np.array([[2, 10, 11, 12, 13, 3]], np.int64)       # the fixture's vocabulary has 100 tokens
    outs = []
    for pad in (0, 5, 14):
        feeds = {"input_ids": np.pad(ids, [(0, 0), (0, pad)]),
                 "attention_mask": np.pad(np.ones_like(ids), [(0, 0), (0, pad)]),
                 "token_type_ids": np.zeros((1, ids.shape[1] + pad), np.int64)}
        outs.append(sess.run(None, feeds)[0])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], rtol=1e-4, atol=1e-5)
