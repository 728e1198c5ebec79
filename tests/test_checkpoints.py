"""A trained model.pt loads back as it was written, also one written while the seed was a template key."""

from dataclasses import asdict

import torch

from pipelines import checkpoints, engines


def test_a_model_pt_holding_a_seed_in_its_template_still_loads(tiny_spec, tmp_path):
    spec, adapter = tiny_spec(), engines.adapter("torchvision")
    torch.manual_seed(0)
    checkpoints.save(tmp_path / "model.pt", adapter.build(spec, 1).state_dict(), spec, ["grape"], epoch=1)
    state = torch.load(tmp_path / "model.pt", weights_only=False)
    assert state["template"] == asdict(spec) and "seed" not in state["template"]  # the seed is the cell's
    state["template"]["seed"] = 3  # what the train stage wrote before
    torch.save(state, tmp_path / "older.pt")
    for path in (tmp_path / "model.pt", tmp_path / "older.pt"):
        model, restored, labels = checkpoints.restore(path, adapter)
        assert restored == spec and labels == ["grape"] and not model.training
