"""The cross-batch reference memory of `earthfix train --memory`: the memory itself is numpy (runs without
torch); the training step with it needs the ``train`` extra and is skipped without it."""
import numpy as np

from earthfix.tools.train_encoder import ReferenceMemory


def _meta(q_lat, q_lon, q_hw, r_lat, r_lon, r_hw):
    return np.array([[q_lat, q_lon, q_hw, r_lat, r_lon, r_hw]], float)


def test_remembered_references_over_the_querys_ground_are_not_negatives():
    bank = ReferenceMemory(size=8, dim=4)
    assert bank.negatives_mask(_meta(0, 0, 400, 0, 0, 400)).shape == (1, 0)
    # three references: on the query's ground, 300 km away (inside a 400 km half-width), 3,000 km away
    refs = np.array([[0, 0, 0, 0, 0, 400], [0, 0, 0, 2.7, 0, 400], [0, 0, 0, 27, 0, 400]], float)
    bank.push(np.eye(3, 4, dtype=np.float32), refs)
    mask = bank.negatives_mask(_meta(0, 0, 400, 0, 0, 400))
    assert mask.tolist() == [[True, True, False]]
    # a query with a smaller footprint (150 km) overlaps only the reference on its own ground
    assert bank.negatives_mask(_meta(0, 0, 150, 0, 0, 150)).tolist() == [[True, False, False]]


def test_the_memory_keeps_the_newest_references_up_to_its_size():
    bank = ReferenceMemory(size=5, dim=2)
    for k in range(3):
        z = np.full((2, 2), k, np.float32)
        bank.push(z, np.column_stack([np.zeros((2, 3)), np.full(2, k), np.zeros(2), np.full(2, 100.0)]))
    assert bank.z.shape == (5, 2) and bank.where.shape == (5, 3)
    assert bank.z[:, 0].tolist() == [2, 2, 1, 1, 0]             # newest first, the oldest one dropped
    assert bank.where[:, 0].tolist() == [2, 2, 1, 1, 0]


def test_training_with_the_memory_takes_finite_steps_and_records_it(tmp_path):
    import json

    import pytest
    pytest.importorskip("torch")             # the train extra; CI installs dev only
    from earthfix.tools.train_encoder import train
    train(tmp_path, minutes=0, steps=3, seed=0, lr=1e-3, dim=128, threads=1, workers=0,
          memory=256, memory_from_step=1, memory_weight=0.5, log=lambda s: None)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert (log["memory"], log["memory_from_step"], log["memory_weight"]) == (256, 1, 0.5)
    losses = [h[1] for h in log["history"]]
    assert len(losses) == 3 and all(np.isfinite(losses))
    # from step 1 the memory's term is in the loss: log(1 + 64 remembered) > 0 beyond the in-batch term
    assert losses[2] > losses[0]
