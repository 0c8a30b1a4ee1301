"""bf16 training (``earthfix train --bf16``): float32 weights out, and the same network as float32 training.

Needs the ``train`` extra (torch); skipped without it (CI installs ``dev`` only)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from earthfix.tools.train_encoder import build_model, train  # noqa: E402


def test_bf16_steps_keep_float32_weights_and_a_finite_loss(tmp_path):
    ckpt = train(tmp_path, minutes=0, steps=2, seed=0, lr=1e-3, dim=128, threads=1, workers=0, bf16=True,
                 log=lambda s: None)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2
    assert all(v.dtype in (torch.float32, torch.int64) for v in state["model"].values())
    model = build_model(128)
    model.load_state_dict(state["model"])          # a plain (float32, contiguous) model takes the weights
    hist = json.loads((tmp_path / "train_log.json").read_text())
    assert hist["bf16"] is True and all(np.isfinite(h[1]) for h in hist["history"])


def test_bf16_forward_is_close_to_float32():
    torch.manual_seed(0)
    model = build_model(128).eval()
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last))
    cos = torch.nn.functional.cosine_similarity(ref, low.float(), dim=1)
    assert float(cos.min()) > 0.99
