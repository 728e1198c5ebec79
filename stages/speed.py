"""Stage speed: every selected template's IRs at the deployment precision (deploy.precision), timed side by side.

Per dataset, the IRs of every template and seed are loaded together and run on the same test images in
interleaved rounds (pipelines.speed.side_by_side), pre- and post-processing included as `predict` runs them, on
one inference thread each (THREADS says why), so that whatever else loads the machine falls on every template
alike. Every seed's model is timed: post-processing
grows with the detections a model makes, and that differs between trainings of one template. The report's
recommendation takes its speed ratios from here; validate's per-cell latencies only fill the speed tables.

    metrics/speed.json   per dataset: each template's mean ms per image in each round, and the machine's load
"""

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

from pipelines import cells, legs
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_text_atomic
from pipelines.inference import InputSpec, predict_image, split_images
from pipelines.ir import OpenVinoPredictor
from pipelines.speed import CpuLoad, machine, side_by_side
from pipelines.splits import TEST, split_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, required=True, help="folder with one <template>-<dataset>-seed<n>/ per cell")
    p.add_argument("--data", type=Path, required=True, help="folder with one prepared <dataset>/ (test.json)")
    p.add_argument("--out", type=Path, required=True, help="json to write")
    return p


# One inference thread per model. With several, a model waits at each parallel step for its slowest thread, and on
# a busy machine some thread is always descheduled: the wait then grows with the number of steps a graph has, so
# load changes the ratio between two templates itself (measured here under a CPU hog: the same two IRs' time
# ratio spread over 0.55-1.31 with two threads, 0.81-1.05 with one). On one thread load slows every template
# alike. The cells' own multi-threaded latencies are in the report's speed tables.
THREADS = 1


def runner(xml_path: Path):
    """A callable that runs one image through the IR as `predict` does, and the precision it computes in."""
    predictor = OpenVinoPredictor(xml_path, threads=THREADS)
    spec = InputSpec.from_dict(predictor.input_spec)
    return partial(predict_image, predictor, spec=spec, score_threshold=predictor.score_threshold), predictor.precision


def time_dataset(models: Path, data: Path, dataset: str, templates: list, seeds: list, precision: str,
                 timing: dict) -> dict:
    runners, computed = {}, set()
    for template in templates:
        runners[template] = []
        for seed in seeds:
            run, compute = runner(cells.Cell(template, dataset, seed).ir(precision, models))
            runners[template].append(run)
            computed.add(compute)
    inputs = split_images(split_file(data / dataset, TEST), timing["images"])
    with CpuLoad() as load:
        times = side_by_side(runners, inputs, timing["rounds"], timing["warmup"])
    return {"ms": {t: [round(v, 3) for v in times[t]] for t in templates}, "inference_precision": sorted(computed),
            **load.to_dict()}


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    precision, timing = params.deploy["precision"], params.deploy["timing"]
    # A template the race stopped has no IR: the others are timed.
    finishers = [t for t in params.run_templates if not any(
        legs.read_stopped(c.model_dir(args.models) / cells.MODEL_FILE)
        for c in cells.selected([t], params.run_datasets, params.run_seeds))]
    found = {"runtime": cells.runtime(precision), "threads": THREADS, "rounds": timing["rounds"],
             "images": timing["images"], "seeds": params.run_seeds, **machine(), "datasets": {},
             "stopped": [t for t in params.run_templates if t not in finishers]}
    for dataset in params.run_datasets:
        found["datasets"][dataset] = measured = time_dataset(args.models, args.data, dataset, finishers,
                                                             params.run_seeds, precision, timing)
        medians = ", ".join(f"{t} {statistics.median(v):.1f} ms" for t, v in measured["ms"].items())
        print(f"{dataset}: {medians} per image (other processes' share of the CPU: {measured['others_cpu_share']})",
              flush=True)
    write_text_atomic(args.out, json.dumps(found, indent=1))


if __name__ == "__main__":
    run(main)
