"""params.yaml validation: every problem of the file at once, each on a line naming the key, its value and what
would be right, before any stage does work."""

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipelines import config
from pipelines.config import DatasetSpec, ParamsError, TemplateSpec, load_params

ROOT = Path(__file__).resolve().parents[1]
DATUMARO_FORMATS = ("['coco', 'coco_instances', 'mmdet_coco', 'roboflow_coco', 'cityscapes', 'voc', "
                    "'voc_instance_segmentation', 'ade20k2017', 'ade20k2020', 'mapillary_vistas_instances', "
                    "'kitti_segmentation', 'label_me', 'cvat', 'open_images', 'datumaro', 'datumaro_binary']")


def edited(tmp_path, change) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def refusal(tmp_path, change) -> list:
    """The problems load_params finds in the project's params.yaml once `change` is made, without the file name."""
    path = edited(tmp_path, change)
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert all(line.startswith(f"{path}: ") for line in error.value.problems)
    assert str(error.value) == "\n".join(error.value.problems)
    return [line.removeprefix(f"{path}: ") for line in error.value.problems]


def template(name, **values):
    return lambda p: p["templates"][name].update(values)


def dataset(name, **values):
    return lambda p: p["datasets"][name].update(values)


def test_the_projects_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.run_templates == ["tv_lite0", "tv_lite2", "mmdet_lite0"] and params.run_seeds == [0, 1]
    assert params.run_datasets == ["cityscapes", "pets", "wgisd_5"]
    assert all(params.templates[t].pretrained == "imagenet" for t in params.run_templates)


@pytest.mark.parametrize("change, message", [
    # a template's recipe
    (template("tv_lite0", epochs=-1), "templates.tv_lite0.epochs is -1: a whole number >= 1"),
    (template("tv_lite0", tiling={"size": 16}), "templates.tv_lite0.tiling is {'size': 16}: null, auto, or "
     "{size: whole number >= 32, overlap: a share in [0, 0.9], min_share: a share in (0, 1]} (size required)"),
    (template("tv_lite0", tiling="yes"), "templates.tv_lite0.tiling is 'yes': null, auto, or {size: whole number "
     ">= 32, overlap: a share in [0, 0.9], min_share: a share in (0, 1]} (size required)"),
    (template("tv_lite0", epochs=0), "templates.tv_lite0.epochs is 0: a whole number >= 1"),
    (template("tv_lite0", epochs=2.5), "templates.tv_lite0.epochs is 2.5: a whole number >= 1"),
    (template("tv_lite0", lr="abc"), "templates.tv_lite0.lr is 'abc': a number > 0"),
    (template("tv_lite0", lr=0), "templates.tv_lite0.lr is 0: a number > 0"),
    (template("tv_lite0", lr=-0.01), "templates.tv_lite0.lr is -0.01: a number > 0"),
    (template("tv_lite0", batch_size=0), "templates.tv_lite0.batch_size is 0: a whole number >= 1"),
    (template("tiny", input_size=0), "templates.tiny.input_size is 0: a whole number >= 1"),
    (template("tv_lite0", input_size=16),
     "templates.tv_lite0.input_size is 16: a whole number >= size_divisor (32) with resize_mode keep_ratio"),
    (template("effb2b_480", input_size=480, size_divisor=512),
     "templates.effb2b_480.input_size is 480: a whole number >= size_divisor (512) with resize_mode stretch"),
    (template("tv_lite0", resize_mode="crop"),
     "templates.tv_lite0.resize_mode is 'crop': one of ['letterbox', 'keep_ratio', 'stretch']"),
    (template("tv_lite0", channels="GBR"), "templates.tv_lite0.channels is 'GBR': one of ['RGB', 'BGR']"),
    (template("tv_lite0", schedule="step"),
     "templates.tv_lite0.schedule is 'step': one of ['cosine', 'constant', 'plateau']"),
    (template("tv_lite0", optimizer="adam"), "templates.tv_lite0.optimizer is 'adam': one of ['sgd', 'adamw']"),
    (template("tv_lite0", engine="detectron2"),
     "templates.tv_lite0.engine is 'detectron2': one of ['mmdet', 'torchvision']"),
    (template("tv_lite0", std=[128.0, 0.0, 128.0]),
     "templates.tv_lite0.std is [128.0, 0.0, 128.0]: 3 numbers > 0, one per channel"),
    (template("tv_lite0", scale_range=[1.2, 0.8]),
     "templates.tv_lite0.scale_range is [1.2, 0.8]: [low, high] with 0 < low <= high"),
    (template("tv_lite0", amp="yes"), "templates.tv_lite0.amp is 'yes': true or false"),
    (template("tv_lite0", seed=3), "templates.tv_lite0.seed is 3: not set here: each training runs once per seed of "
                                   "run.seeds"),
    (lambda p: p["templates"]["tv_lite0"].pop("epochs"), "templates.tv_lite0.epochs is missing: a whole number >= 1"),
    # a dataset
    (dataset("pets", val_ratio=1.5), "datasets.pets.val_ratio is 1.5: a number in [0, 1)"),
    (dataset("pets", val_ratio=-0.1), "datasets.pets.val_ratio is -0.1: a number in [0, 1)"),
    (dataset("pets", test_ratio=1), "datasets.pets.test_ratio is 1: a number in [0, 1)"),
    (dataset("pets", val_ratio=0.5, test_ratio=0.5),
     "datasets.pets.val_ratio + test_ratio is 0.5 + 0.5: below 1 together, so that training keeps images"),
    (dataset("pets", subsample=0), "datasets.pets.subsample is 0: a number in (0, 1]"),
    (dataset("pets", subsample=1.5), "datasets.pets.subsample is 1.5: a number in (0, 1]"),
    (dataset("pets", subsets={"trainval": "training"}),
     "datasets.pets.subsets is {'trainval': 'training'}: a mapping of the format's subset names to train, val, "
     "test, at least one to train"),
    (dataset("pets", format="yolo"), "datasets.pets.format is 'yolo': one of this project's formats "
     f"['cityscapes_instances', 'oxford_pets', 'wgisd', 'coco_json'] or Datumaro's {DATUMARO_FORMATS}"),
    # which templates run, with which seeds
    (lambda p: p["run"].update(seeds=[]), "run.seeds is []: a non-empty list of distinct whole numbers >= 0"),
    (lambda p: p["run"].update(seeds=[0, 1, 0]),
     "run.seeds is [0, 1, 0]: a non-empty list of distinct whole numbers >= 0"),
    (lambda p: p["run"].update(seeds=[0, "1"]),
     "run.seeds is [0, '1']: a non-empty list of distinct whole numbers >= 0"),
    (lambda p: p["run"].update(datasets=["pets", "wgisd"]),
     "run.datasets names 'wgisd', which datasets does not define; did you mean wgisd_5?"),
    (lambda p: p["run"].update(datasets=["pets", "pets"]), "run.datasets names 'pets' 2 times: once is enough"),
    (lambda p: p["run"].update(datasets=[]), "run.datasets is []: a non-empty list of keys of `datasets`, e.g. "
                                             "[cityscapes, pets]"),
    (lambda p: p["run"].update(templates=["tv_lite0"]),
     "run.templates is ['tv_lite0']: a mapping of every engine (mmdet, torchvision) to the templates it runs, [] for "
     "none, e.g. `mmdet: [mmdet_lite0]`"),
    (lambda p: p["run"]["templates"].pop("mmdet"),
     "run.templates is {'torchvision': ['tv_lite0', 'tv_lite2']}: a mapping of every engine (mmdet, torchvision) to "
     "the templates it runs, [] for none, e.g. `mmdet: [mmdet_lite0]`"),
    (lambda p: p["run"]["templates"].update(mmdet=["nope"]),
     "run.templates.mmdet names 'nope', which templates does not define"),
    (lambda p: p["run"]["templates"].update(mmdet=["mmdet_lite"]),
     "run.templates.mmdet names 'mmdet_lite', which templates does not define; did you mean mmdet_lite0?"),
    (lambda p: p["run"]["templates"].update(mmdet=["tv_lite0"]),
     "run.templates.mmdet names 'tv_lite0', a template of engine 'torchvision': list it under "
     "run.templates.torchvision"),
    (lambda p: p["run"]["templates"].update(mmdet=["mmdet_lite0", "mmdet_lite0"]),
     "run.templates.mmdet names 'mmdet_lite0' 2 times: once is enough"),
    # export, deploy, timing, intervals
    (lambda p: p["export"].update(precisions=["bf16"]), "export.precisions is ['bf16']: it must list fp32 (the other "
     "IRs are derived from it) and nothing but ['fp32', 'bf16', 'fp16', 'int8'], each once"),
    (lambda p: p["export"].update(precisions=["fp32", "fp8"]), "export.precisions is ['fp32', 'fp8']: it must list "
     "fp32 (the other IRs are derived from it) and nothing but ['fp32', 'bf16', 'fp16', 'int8'], each once"),
    (lambda p: p["deploy"].update(precision="int8"), "deploy.precision is 'int8': it must be one of export.precisions "
     "['fp32'], the IRs that are exported and validated"),
    (lambda p: p["deploy"].update(precision="fp8"),
     "deploy.precision is 'fp8': one of ['fp32', 'bf16', 'fp16', 'int8']"),
    (lambda p: p["deploy"].update(latency_budget_ms=0),
     "deploy.latency_budget_ms is 0: a positive number of milliseconds, or null"),
    (lambda p: p["deploy"]["timing"].update(rounds=5),
     "deploy.timing.rounds is 5: at least 6, the fewest rounds that give a speed ratio a 95% interval"),
    (lambda p: p["confidence"].update(resamples=19), "confidence.resamples is 19: a whole number >= 20"),
    (lambda p: p["speed"].update(repeats=0), "speed.repeats is 0: a whole number >= 1"),
    (lambda p: p["speed"].update(throughput_seconds="0.5s"), "speed.throughput_seconds is '0.5s': a number > 0"),
    (lambda p: p["demo"]["pets"].update(test=0), "demo.pets.test is 0: a whole number >= 1"),
    # the race
    (lambda p: p["race"].update(rung=1.0), "race.rung is 1.0: a number in (0, 1): the share of each template's "
     "epochs trained before the verdict"),
    (lambda p: p["race"].update(enabled="yes"), "race.enabled is 'yes': true or false"),
    (lambda p: p["race"].update(margin=-1), "race.margin is -1: a number >= 0"),
    (lambda p: p["race"].update(keep=["tv_lite9"]), "race.keep names 'tv_lite9', which templates does not define"),
    # keys that are not the project's
    (lambda p: p.update(tempaltes={}), "tempaltes is {}: an unknown key; did you mean templates?"),
    (lambda p: p.update(seeds=[0]), "seeds is [0]: an unknown key; did you mean speed?"),
    (dataset("pets", fromat="oxford_pets"),
     "datasets.pets.fromat is 'oxford_pets': an unknown key; did you mean datasets.pets.format?"),
    (template("tv_lite0", epoch=3),
     "templates.tv_lite0.epoch is 3: an unknown key; did you mean templates.tv_lite0.epochs?"),
    (lambda p: p["speed"].update(repeat=3), "speed.repeat is 3: an unknown key; did you mean speed.repeats?"),
    (lambda p: p.pop("speed"), "speed is missing: a mapping of the keys warmup, repeats, throughput_seconds"),
])
def test_a_wrong_value_is_named_with_what_would_be_right(tmp_path, change, message):
    assert refusal(tmp_path, change) == [message]


def test_without_a_race_section_nothing_races(tmp_path):
    params = load_params(edited(tmp_path, lambda p: p.pop("race")))
    assert params.race == {"enabled": False, "rung": 0.5, "margin": 0.0, "keep": [], "eta": 1}
    assert load_params(ROOT / "params.yaml").race == {"enabled": True, "rung": 0.5, "margin": 0.0, "eta": 1, "keep": []}
    assert any("race.eta" in line and "a whole number >= 1" in line
               for line in refusal(tmp_path, lambda p: p["race"].update(eta=0)))


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    def many(p):
        p["templates"]["tv_lite0"].update(epochs=0, lr="abc")
        p["datasets"]["wgisd_1"].update(val_ratio=1.5)
        p["run"].update(seeds=[])
        p["speed"].update(repeats=0)
    assert refusal(tmp_path, many) == [
        "run.seeds is []: a non-empty list of distinct whole numbers >= 0",
        "speed.repeats is 0: a whole number >= 1",
        "datasets.wgisd_1.val_ratio is 1.5: a number in [0, 1)",
        "templates.tv_lite0.epochs is 0: a whole number >= 1",
        "templates.tv_lite0.lr is 'abc': a number > 0",
    ]


def test_an_unknown_key_with_nothing_close_lists_the_keys_there(tmp_path):
    known = ", ".join(f.name for f in fields(TemplateSpec))
    assert refusal(tmp_path, template("tiny", learning_rate=0.1)) == [
        f"templates.tiny.learning_rate is 0.1: an unknown key; templates.tiny takes {known}"]


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    path = edited(tmp_path, lambda p: None)
    text = path.read_text().replace("    epochs: 4\n", "    epochs: 4\n    epochs: 40\n", 1)
    path.write_text(text)
    line = text.splitlines().index("    epochs: 40") + 1
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert error.value.problems == [f"{path}: line {line}: epochs is given a second time in the same mapping: give "
                                    "each key once (YAML would keep the last silently)"]


def test_a_file_that_is_not_yaml_or_not_there_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data_dir: [data\n")
    with pytest.raises(ParamsError, match=rf"^{path}: line 2, column 1: not YAML: expected ',' or ']'"):
        load_params(path)
    with pytest.raises(ParamsError, match=rf"^{tmp_path / 'none.yaml'}: no such file"):
        load_params(tmp_path / "none.yaml")


def test_an_exponent_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path):
    path = edited(tmp_path, lambda p: None)
    path.write_text(path.read_text().replace("    lr: 0.005\n", "    lr: 5e-3\n", 1))
    assert load_params(path).templates["tv_lite0"].lr == 0.005


def test_an_engine_with_no_templates_selected_is_an_empty_list(tmp_path):
    params = load_params(edited(tmp_path, lambda p: p["run"]["templates"].update(mmdet=[])))
    assert params.run_templates == ["tv_lite0", "tv_lite2"]


def test_a_params_error_is_a_value_error_and_a_user_error():
    from pipelines.cli import UserError
    assert issubclass(ParamsError, ValueError) and issubclass(ParamsError, UserError)


def test_every_spec_key_has_a_rule():
    assert list(config.TEMPLATE_RULES) == [f.name for f in fields(TemplateSpec)]
    assert list(config.DATASET_RULES) == [f.name for f in fields(DatasetSpec)]


def test_the_choices_are_those_the_code_acts_on():
    """config.py names the formats so that it does not load Datumaro; these are the lists it must agree with."""
    from datumaro.components.environment import Environment

    from pipelines.datasets import prepare
    assert config.OWN_FORMATS == tuple(prepare.PLUGINS)
    assert set(config.DATUMARO_FORMATS) <= set(Environment().importers)


def test_tiling_takes_auto_or_sizes(tmp_path):
    def tiled(p):
        p["templates"]["tv_lite0"]["tiling"] = "auto"
        p["templates"]["mmdet_lite0"]["tiling"] = {"size": 512, "overlap": 0.2}
    params = load_params(edited(tmp_path, tiled))
    assert params.templates["tv_lite0"].tiling == "auto" and params.templates["mmdet_lite0"].tiling["size"] == 512
    assert load_params(edited(tmp_path, lambda p: None)).templates["tv_lite0"].tiling is None
