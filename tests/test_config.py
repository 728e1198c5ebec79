"""params.yaml validation: the first error anyone editing it meets names the key and what would be right."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def edited(tmp_path, change) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_the_projects_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.run_templates == ["tv_lite0", "mmdet_lite0"] and params.run_seeds == [0, 1]
    assert all(params.templates[t].pretrained == "imagenet" for t in params.run_templates)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["templates"]["tv_lite0"].update(learning_rate=0.1),
     "templates.tv_lite0: unknown keys ['learning_rate'], missing keys []"),
    (lambda p: p["templates"]["tv_lite0"].pop("epochs"), "templates.tv_lite0: unknown keys [], missing keys ['epochs']"),
    (lambda p: p["templates"]["tv_lite0"].update(seed=3), "templates ['tv_lite0'] set `seed`; training seeds come from"),
    (lambda p: p["run"].update(templates=["tv_lite0"]), "run.templates maps every engine (mmdet, torchvision) to the"),
    (lambda p: p["run"]["templates"].pop("mmdet"), "run.templates maps every engine"),
    (lambda p: p["run"]["templates"].update(mmdet=["nope"]), "run.templates.mmdet names 'nope', which templates does not"),
    (lambda p: p["run"]["templates"].update(mmdet=["tv_lite0"]),
     "run.templates.mmdet names 'tv_lite0', a template of engine 'torchvision': list it under run.templates.torchvision"),
    (lambda p: p["export"].update(precisions=["bf16"]), "export.precisions is ['bf16']: it must list fp32"),
    (lambda p: p["export"].update(precisions=["fp32", "fp8"]), "and nothing but ['fp32', 'bf16', 'fp16', 'int8']"),
    (lambda p: p["datasets"]["pets"].update(fromat="oxford_pets"), "datasets.pets: unknown keys ['fromat']"),
])
def test_a_wrong_key_is_named_with_what_would_be_right(tmp_path, change, message):
    path = edited(tmp_path, change)
    with pytest.raises(ValueError) as error:
        load_params(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_an_engine_with_no_templates_selected_is_an_empty_list(tmp_path):
    params = load_params(edited(tmp_path, lambda p: p["run"]["templates"].update(mmdet=[])))
    assert params.run_templates == ["tv_lite0"]
