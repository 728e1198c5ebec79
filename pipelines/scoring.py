"""What evaluate (a PyTorch model) and validate (an OpenVINO IR) measure, the same way: one function for both, so
their numbers differ by the runtime alone.

On the test split: COCO segm and bbox metrics overall and per class, their bootstrap intervals and replicates;
the score threshold with the best F1 on the validation split, and precision / recall / F1 with it on the test
split; the errors behind the mAP (pipelines.tide) on the same resamples; batch-1 latency on the first test image
(a tiled model's: all its tiles and the whole image, merged).
"""

from dataclasses import dataclass
from pathlib import Path

from pipelines import confidence, tide
from pipelines.evaluation import evaluate
from pipelines.inference import predict_image, predict_split, split_images, split_inputs
from pipelines.speed import latency


@dataclass
class Scored:
    metrics: dict          # flat: segm_map, segm_map_low, ..., deploy_f1, latency_ms
    per_class: dict        # class name -> segm_ap, segm_ap50, bbox_ap, bbox_ap50
    replicates: dict       # segm_map (and by object size: segm_map_small, ...), bbox_map: bootstrap replicates
    errors: dict           # pipelines.tide.analyse: dAPs with intervals and replicates, counts, confusion, areas
    results: list          # the test split's COCO results


def score(predictor, input_spec, score_threshold: float, test_json: Path, val_json: Path, confidence_params: dict,
          speed: dict) -> Scored:
    """Runs `predictor` (a pipelines.inference predictor) on both splits and measures it."""
    results = predict_split(predictor, test_json, input_spec, score_threshold)
    val_results = predict_split(predictor, val_json, input_spec, score_threshold)
    metrics, per_class = evaluate(test_json, results)
    matches = confidence.metric_matches(test_json, results)
    bounds, replicates = confidence.intervals(matches, **confidence_params)
    metrics.update(bounds)
    metrics.update(confidence.deploy_scores(confidence.match(val_json, val_results, "segm"), matches["segm_map"]))
    found = tide.analyse(test_json, results, metrics["deploy_threshold"], **confidence_params)
    if input_spec.tile_size:
        # A tiled model's one inference is every tile and the whole image, merged: timed as predict runs it.
        (pixels,) = split_images(test_json, 1)
        seconds = latency(lambda image: predict_image(predictor, image, input_spec, score_threshold), pixels,
                          speed["warmup"], speed["repeats"])
    else:
        (first,) = split_inputs(test_json, input_spec, 1)
        seconds = latency(predictor, first, speed["warmup"], speed["repeats"])
    metrics["latency_ms"] = round(1000 * seconds, 2)
    return Scored(metrics, per_class, replicates, found, results)
