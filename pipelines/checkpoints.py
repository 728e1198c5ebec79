"""A trained model's `model.pt`, as the train stage writes it, and the model it holds.

The file keeps the best validation epoch's weights, the template as trained (`TemplateSpec` fields) and the
labels; any engine's adapter rebuilds the model from them.
"""

import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from pipelines.cli import UserError
from pipelines.config import TemplateSpec
from pipelines.engines.contract import Loaded, ModelAdapter
from pipelines.files import write_atomic
from pipelines.inference import template_input


def save(path: Path, weights: dict, spec, labels: list, epoch: int) -> None:
    """Writes a `model.pt`, whole or not at all: the weights of `epoch`, template `spec` as trained, the labels."""
    state = {"model": weights, "template": asdict(spec), "labels": labels, "epoch": epoch}
    write_atomic(path, lambda staged: torch.save(state, staged))


def restore(checkpoint: Path, adapter: ModelAdapter):
    """The trained model a `model.pt` holds (in eval mode), its template and its labels."""
    if not Path(checkpoint).is_file():
        raise UserError(f"{checkpoint} does not exist: the train stage writes it (`dvc repro`)")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise UserError(f"{checkpoint} is not a whole checkpoint ({error}); train it again (`dvc repro -f` of its "
                        "train stage)") from None
    if not isinstance(state, dict) or not {"model", "template", "labels"} <= set(state):
        raise UserError(f"{checkpoint} is not a checkpoint the train stage wrote (it holds no model, template and "
                        "labels)")
    # The trained weights replace any pretrained start, so none is loaded here. A model.pt written while the seed
    # was a template key holds one: the seed is the cell's, not a TemplateSpec key.
    stored = {k: v for k, v in state["template"].items() if k != "seed"}
    spec = TemplateSpec(**{**stored, "pretrained": "none"})
    model = adapter.build(spec, len(state["labels"]))
    model.load_state_dict(state["model"])
    return model.eval(), spec, state["labels"]


def load(checkpoint: Path, adapter: ModelAdapter) -> Loaded:
    """What evaluation and export need of a trained model. The graph keeps the template's score threshold:
    detections below it never reach the mask head. (Exporting with no threshold, to leave it all to
    post-processing, made the IR compute 100 masks per image and ran 1.8x slower for the same mAP; an IR's
    `predict` can raise the threshold, not lower it.)"""
    model, spec, labels = restore(checkpoint, adapter)
    return Loaded(adapter.inference_graph(model, spec), template_input(spec), labels, spec.score_threshold)


def torch_predictor(graph, device="cpu"):
    """A `pipelines.inference` predictor running an engine's inference graph with PyTorch on `device`
    (where the graph's weights are)."""
    def predict(batch):
        with torch.no_grad():
            return [t.cpu().numpy() for t in graph(torch.from_numpy(batch).to(device))]
    return predict
