"""Training engines. A template names its engine; stages reach models only through `get(name)`.

An engine is a package `pipelines/engines/<name>/` (everything that names its library lives there),
registered in ENGINES, whose `__init__` provides:
    Adapter             builds its models, computes their losses, wraps them into an inference graph
                        (see pipelines.training.ModelAdapter): the shared loop trains them
    INT8_FLOAT_SCOPES   IR layer-name parts whose box arithmetic stays float
The inference graph is a torch module following `pipelines.inference`'s predictor contract, so
evaluation and OpenVINO export are the same for every engine. Stages use the functions below.
"""

import importlib
from dataclasses import dataclass

ENGINES = {"torchvision": "pipelines.engines.torchvision", "mmdet": "pipelines.engines.mmdet"}


@dataclass(frozen=True)
class TrainResult:
    history: list              # one record per epoch: epoch, lr, losses, timings, val_segm_map, val_bbox_map
    best_epoch: int            # the epoch whose weights model.pt holds (best validation segm mAP)
    best_val_segm_map: float


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be had (offline machine, missing or altered file)."""


def load_fitting_weights(model, state: dict, path) -> None:
    """Loads the weights of `state` (read from `path`) whose name and shape fit `model`, skipping the others:
    the class-specific layers, which the engine rebuilt for this dataset."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise PretrainedWeightsError(f"{path} holds no weights that fit this template's architecture")
    model.load_state_dict(usable, strict=False)


@dataclass
class Loaded:
    graph: object          # torch.nn.Module: [1, 3, H, W] -> boxes, scores, labels, mask probabilities
    input_spec: object     # pipelines.inference.InputSpec
    labels: list
    score_threshold: float


def torch_predictor(graph, device="cpu"):
    """A `pipelines.inference` predictor running an engine's inference graph with PyTorch on `device`
    (where the graph's weights are)."""
    import numpy as np
    import torch

    def predict(batch: np.ndarray):
        with torch.no_grad():
            return [t.cpu().numpy() for t in graph(torch.from_numpy(batch).to(device))]
    return predict


def get(name: str):
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {sorted(ENGINES)}")
    return importlib.import_module(ENGINES[name])


def train(spec, data_dir, out_dir, log=print, on_epoch=lambda record: None) -> TrainResult:
    """Fine-tunes template `spec` on a prepared dataset; writes `<out_dir>/model.pt` (the best validation
    epoch), resumes a killed run, calls `on_epoch(record)` after every epoch."""
    from pipelines import training
    return training.fit(spec, get(spec.engine).Adapter, data_dir, out_dir, log, on_epoch)


def load(engine: str, checkpoint) -> Loaded:
    """The inference graph of a trained `model.pt` (score threshold inside) and what it needs."""
    from pipelines import training
    return training.load(checkpoint, get(engine).Adapter)


def complexity(engine: str, checkpoint) -> dict:
    """{"gflops": ..., "params_m": ...} of a trained `model.pt`."""
    from pipelines import training
    return training.complexity(checkpoint, get(engine).Adapter)
