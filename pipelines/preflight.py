"""Before a long benchmark: is every file it needs on this machine? Names each one that is not, with where to
put it, rather than letting the run stop at the first.

    python -m pipelines.preflight --data-dir data/raw --templates effb2b_480,effb2b_576,r50,convnext

Datasets: every dataset of params.yaml must lie under the data folder. Pretrained weights: each selected
template is built once for one class. A start that is a file (the seed templates' COCO snapshots, which
`make fetch` puts into data/raw/snapshots) must exist; a URL or a library's weights are downloaded into torch's
cache where a network is reachable (so the benchmark later finds them) and, offline, the engine's message names
the file and its place. Exits with 1 when something is missing.
"""

import argparse
import sys
from pathlib import Path

from pipelines import engines
from pipelines.engines.contract import PretrainedWeightsError
from pipelines.config import PARAMS_FILE, load_params


def missing_datasets(params, data_dir: Path) -> list:
    return [f"dataset {key} ({spec.format}): {data_dir / spec.path} does not exist (`make fetch`; docs/datasets.md, "
            "The real datasets)"
            for key, spec in params.datasets.items() if not (data_dir / spec.path).exists()]


def missing_weights(params, templates: list) -> list:
    problems = []
    for name in templates:
        spec = params.templates[name]
        print(f"template {name}: pretrained {spec.pretrained}", flush=True)
        try:
            engines.adapter(spec.engine).build(spec, 1)
        except PretrainedWeightsError as error:
            problems.append(f"template {name}: {error}")
    return problems


def main(args=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, help="where the datasets lie (default: params.yaml's data_dir)")
    p.add_argument("--templates", help="comma-separated template keys (default: params.yaml's run.templates)")
    a = p.parse_args(args)
    params = load_params(PARAMS_FILE)
    templates = a.templates.split(",") if a.templates else params.run_templates
    unknown = [t for t in templates if t not in params.templates]
    if unknown:
        sys.exit(f"{PARAMS_FILE} defines no templates {unknown}")
    problems = missing_datasets(params, a.data_dir or Path(params.data_dir)) + missing_weights(params, templates)
    for problem in problems:
        print(f"MISSING {problem}")
    print(f"{len(problems)} missing" if problems else "everything the benchmark needs is here")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
