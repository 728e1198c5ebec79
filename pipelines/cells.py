"""A cell: one template fine-tuned on one dataset with one seed, and the name of every file it writes.

    models/<cell>/model.pt                       train     the best validation epoch (resume.pt while it trains)
    models/<cell>/ir/<precision>/model.xml       export    one OpenVINO IR per precision (model.bin beside it)
    metrics/<cell>/training.json                 train     best epoch, its validation mAP, epochs run, seconds
    metrics/<cell>/validation.json               train     every epoch's validation segm mAP, its bootstrap
                                                           replicates and seconds (what a race compares)
    metrics/<cell>/live/                         train     DVCLive: the per-epoch curves, metrics.json (the kept
                                                           epoch's record) and params.yaml (the recipe as trained)
    metrics/<cell>/<runtime>.json                evaluate (pytorch), validate (ir_<precision>): test metrics
    metrics/<cell>/<runtime>_bootstrap.json      ...       their bootstrap replicates over test images
    metrics/<cell>/<runtime>_errors.json         ...       the errors behind their mAP (pipelines.tide)
    metrics/<cell>/per_class.json                evaluate  per-class AP of the PyTorch model
    metrics/<cell>/predictions.jpg               evaluate  test images, ground truth beside predictions
    metrics/<cell>/errors.jpg                    evaluate  the test images with the most missed or false mask area

with <cell> = <template>-<dataset>-seed<seed> and <runtime> = pytorch or ir_<precision>. Beside the cells:

    metrics/speed.json                           speed     every selected template's IRs at deploy.precision,
                                                           timed side by side per dataset (pipelines.speed)
 dvc.yaml spells these
paths with DVC's variables; tests/test_dvc_yaml.py checks each of them against this module. Stages, the
report and the tests take every name from here.
"""

from dataclasses import dataclass
from pathlib import Path

MODELS = Path("models")
METRICS = Path("metrics")
PYTORCH = "pytorch"

MODEL_FILE = "model.pt"
RESUME_FILE = "resume.pt"
IR_FOLDER = "ir"
IR_FILE = "model.xml"
TRAINING_FILE = "training.json"
VALIDATION_FILE = "validation.json"
LIVE_FOLDER = "live"
RECIPE_FILE = f"{LIVE_FOLDER}/params.yaml"  # DVCLive's log_params
# Where DVCLive (in the train stage's folder above) writes the curve of metric val/segm_map, one row per epoch.
VAL_SEGM_CURVE = f"{LIVE_FOLDER}/plots/metrics/val/segm_map.tsv"
PER_CLASS_FILE = "per_class.json"
PICTURE_FILE = "predictions.jpg"
ERRORS_PICTURE_FILE = "errors.jpg"
SPEED_FILE = "speed.json"  # in METRICS, beside the cells' folders


def runtime(precision: str | None = None) -> str:
    """The name of a runtime in file names and the long table: pytorch, or ir_<precision>."""
    return PYTORCH if precision is None else f"ir_{precision}"


def precision_of(runtime_name: str) -> str | None:
    """The IR precision of a runtime (None for PyTorch)."""
    return None if runtime_name == PYTORCH else runtime_name.removeprefix("ir_")


@dataclass(frozen=True)
class Cell:
    template: str
    dataset: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.template}-{self.dataset}-seed{self.seed}"

    def model_dir(self, root: Path = MODELS) -> Path:
        return Path(root) / self.name

    def metrics_dir(self, root: Path = METRICS) -> Path:
        return Path(root) / self.name

    def ir(self, precision: str, root: Path = MODELS) -> Path:
        return self.model_dir(root) / IR_FOLDER / precision / IR_FILE

    def results(self, runtime_name: str, root: Path = METRICS) -> Path:
        return self.metrics_dir(root) / f"{runtime_name}.json"

    def replicates(self, runtime_name: str, root: Path = METRICS) -> Path:
        return self.metrics_dir(root) / f"{runtime_name}_bootstrap.json"

    def errors(self, runtime_name: str, root: Path = METRICS) -> Path:
        return self.metrics_dir(root) / f"{runtime_name}_errors.json"


def selected(templates: list, datasets: list, seeds: list) -> list:
    """Every cell a run selects, in report order (template, then dataset, then seed)."""
    return [Cell(t, d, s) for t in templates for d in datasets for s in seeds]
