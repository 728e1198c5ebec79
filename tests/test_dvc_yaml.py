"""dvc.yaml declares exactly what each stage touches, derived from the code rather than kept by hand.

For every stage DVC resolves from dvc.yaml, the project modules its entry point imports (directly or
through other project modules, lazy imports included; a stage of an engine's family, `<verb>_<engine>`,
whose entry point imports the engine registry also runs that engine's package) must be its code deps, no more and no fewer; the params.yaml keys it
reads through `load_params()` must be its `params`; every path its command names must be one of its deps
or outs; a cell's paths are those of pipelines/cells.py, and a prepared split's those of pipelines/splits.py. A wrong list makes DVC skip work that changed
or redo work that did not. The `stages` package's own `__init__` (the hand-over to pipelines/preload.py's server)
is how a stage's process starts, not what it computes (tests/test_preload.py: the same bytes either way), and the
walk from the entry point's file does not reach it: it is no stage's dep.
"""

import ast
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from pipelines import cells, splits
from pipelines.config import YAML_KEYS, load_params
from pipelines.engines import ENGINES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "stages")


def module_file(root: Path, name: str) -> Path | None:
    """The file of project module `name`, or None for a module outside the project (or a name in one)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def has_code(path: Path) -> bool:
    """False for a package `__init__.py` that holds only its docstring: importing it runs nothing."""
    body = ast.parse(path.read_text()).body
    return not all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def imported_names(root: Path, path: Path) -> set:
    """Every module name `path` imports anywhere (inside functions too), with the packages on the way."""
    tree, names = ast.parse(path.read_text()), set()
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {".".join(name.split(".")[:k]) for name in names for k in range(1, len(name.split(".")) + 1)}


def code_deps(root: Path, entry: str, engine: str | None = None) -> set:
    """Project files that running module `entry` may execute, relative to `root`; with `engine`, the stage also
    runs that engine's package (pipelines.engines.adapter imports it by name)."""
    found, todo = set(), [module_file(root, entry)] + ([module_file(root, ENGINES[engine])] if engine else [])
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        todo += [f for f in (module_file(root, n) for n in imported_names(root, path)) if f and f not in found]
    return {p.relative_to(root).as_posix() for p in found if p.name != "__init__.py" or has_code(p)}


def command_args(cmd: str) -> dict:
    """`--name value` pairs of a stage command, keyed like argparse's dest (`--per-class` -> per_class)."""
    words = shlex.split(cmd)
    return {w[2:].replace("-", "_"): v for w, v in zip(words, words[1:]) if w.startswith("--")}


def params_read(path: Path, args: dict) -> set:
    """params.yaml keys a stage file reads through `load_params()`, with `args.<name>` subscripts resolved
    from the command. A value bound to a name, or passed on, counts as read whole."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "load_params"]
    bound = {t.id for n in calls if isinstance(parents[n], ast.Assign) for t in parents[n].targets}
    roots = [n for n in calls if n.func.id == "load_params" and not isinstance(parents[n], ast.Assign)]
    roots += [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in bound and isinstance(n.ctx, ast.Load)]
    keys = set()
    for node in roots:
        key = []
        while True:
            parent = parents[node]
            if isinstance(parent, ast.Attribute) and not key:
                key.append(YAML_KEYS.get(parent.attr, parent.attr))
            elif isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(parents[parent], ast.Call):
                parent = parents[parent]  # mapping.get(k) reads what mapping[k] does
                key.append(_subscript(parent.args[0], args))
            elif isinstance(parent, ast.Attribute):
                key.append(parent.attr)
            elif isinstance(parent, ast.Subscript) and parent.value is node and key:
                key.append(_subscript(parent.slice, args))
            else:
                break
            node = parent
        keys.add(".".join(key) if key else "<all of params.yaml>")
    return keys


def _subscript(node, args: dict) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "args":
        return args[node.attr]
    raise AssertionError(f"cannot tell which params key {ast.unparse(node)} reads")


def fully_read(key: str, reads: set, params: dict) -> bool:
    """True when `key` is read whole, or every key under it is."""
    if key in reads:
        return True
    value = params
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return isinstance(value, dict) and bool(value) and all(fully_read(f"{key}.{k}", reads, params) for k in value)


def problems(root: Path) -> list:
    """What dvc.yaml at `root` gets wrong about its stages' code, params and paths, one line each."""
    found, params = [], yaml.safe_load((root / "params.yaml").read_text())
    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
    for stage in stages:
        words, name = shlex.split(stage.cmd), stage.name
        entry = words[words.index("-m") + 1]
        args = command_args(stage.cmd)
        deps = {d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)}
        listed = {d for d in deps if d.split("/")[0] in PACKAGES}
        files = set()
        for dep in listed:
            # Python files under a `configs` folder are model configs an engine reads by path (mmdet's), not code;
            # an engine's preload.py is read by path by the preload server (pipelines/preload.py), not by stages.
            files |= {p.relative_to(root).as_posix() for p in (root / dep).rglob("*.py")
                      if (p.name != "__init__.py" or has_code(p)) and "configs" not in p.relative_to(root).parts
                      and p.name != "preload.py"} if (root / dep).is_dir() else {dep}
        family = name.split("@")[0]
        engine = family.split("_", 1)[1] if "_" in family and family.split("_", 1)[1] in ENGINES else None
        if "pipelines.engines" not in imported_names(root, module_file(root, entry)):
            engine = None  # its stages do not load a model (validate runs the IR alone)
        needed = code_deps(root, entry, engine)
        found += [f"{name}: imports {f}, which its deps do not list" for f in sorted(needed - files)]
        found += [f"{name}: lists {f} in its deps, which it never imports" for f in sorted(files - needed)]
        listed_params = {p for d in stage.deps if isinstance(d, ParamsDependency) for p in d.params}
        reads = params_read(module_file(root, entry), args)
        found += [f"{name}: reads params key {r}, which its params do not list" for r in sorted(reads)
                  if not any(r == p or r.startswith(p + ".") for p in listed_params)]
        found += [f"{name}: lists params key {p}, but reads only {sorted(reads)}" for p in sorted(listed_params)
                  if not fully_read(p, reads, params)]
        declared = deps | {o.def_path for o in stage.outs}
        for flag, value in args.items():
            if "/" in value and not any(value == d or value.startswith(d + "/") or d.startswith(value + "/")
                                        for d in declared):
                found.append(f"{name}: its command names {value} (--{flag}), neither a dep nor an out")
    for path in (root / "pipelines").rglob("*.py"):
        if "load_params()" in path.read_text():
            found.append(f"{path.relative_to(root)} reads params.yaml itself: only stages may (they pass values on)")
    return found


def test_dvc_yaml_declares_what_each_stage_imports_reads_and_writes():
    assert problems(ROOT) == []


def scratch_copy(tmp_path: Path) -> Path:
    """A copy of the code, dvc.yaml and params.yaml with a DVC folder: enough for DVC to resolve stages."""
    copy = tmp_path / "repo"
    for name in ("pipelines", "stages"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, copy / name)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=copy, check=True)
    return copy


def test_a_missing_dep_an_undeclared_import_and_an_extra_param_are_caught(tmp_path):
    copy = scratch_copy(tmp_path)
    dvc_yaml = yaml.safe_load((copy / "dvc.yaml").read_text())
    dvc_yaml["stages"]["evaluate_torchvision"]["deps"].remove("pipelines/visualize.py")
    dvc_yaml["stages"]["validate_torchvision"]["params"].append("export")
    dvc_yaml["stages"]["validate_torchvision"]["outs"] = [o.replace("_bootstrap", "_replicates")
                                                          for o in dvc_yaml["stages"]["validate_torchvision"]["outs"]]
    dvc_yaml["stages"]["validate_torchvision"]["cmd"] = dvc_yaml["stages"]["validate_torchvision"]["cmd"].replace(
        "_bootstrap", "_replicates")
    dvc_yaml["stages"]["evaluate_torchvision"]["cmd"] = dvc_yaml["stages"]["evaluate_torchvision"]["cmd"].replace(
        "/val.json", "/validation.json")
    (copy / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    stage = copy / "stages" / "validate.py"
    stage.write_text(stage.read_text().replace("import argparse\n", "import argparse\n\nimport pipelines.report.text\n"))
    found = problems(copy)
    assert "evaluate_torchvision@tv_lite0-pets-0: imports pipelines/visualize.py, which its deps do not list" in found
    assert "validate_torchvision@tv_lite0-pets-0-fp32: imports pipelines/report/text.py, which its deps do not " \
           "list" in found
    assert any(line.startswith("validate_torchvision@tv_lite0-pets-0-fp32: lists params key export, but reads only")
               for line in found)
    assert [line.split(":")[0] for line in cell_path_problems(copy)] == ["validate fp32"]  # not cells.py's name
    assert {line.split("@")[0] for line in split_path_problems(copy)} == {"evaluate_torchvision"}  # nor splits.py's


def expected_cell_paths(cell: cells.Cell, precisions: list) -> dict:
    """verb -> (deps, outs) the cell's stages must declare, in pipelines/cells.py's names."""
    model, metrics = cell.model_dir() / cells.MODEL_FILE, cell.metrics_dir()
    live = metrics / cells.LIVE_FOLDER
    data = splits.PREPARED / cell.dataset
    paths = {
        "train": ({data}, {model, metrics / cells.TRAINING_FILE, metrics / cells.VALIDATION_FILE,
                           metrics / cells.RECIPE_FILE, live / "metrics.json", live / "plots" / "metrics"}),
        "evaluate": ({model, data}, {cell.results(cells.PYTORCH), cell.replicates(cells.PYTORCH),
                                     cell.errors(cells.PYTORCH), metrics / cells.PER_CLASS_FILE,
                                     metrics / cells.PICTURE_FILE, metrics / cells.ERRORS_PICTURE_FILE}),
        "export": ({model, data}, {cell.model_dir() / cells.IR_FOLDER}),
    }
    for precision in precisions:
        runtime = cells.runtime(precision)
        paths[f"validate {precision}"] = ({cell.ir(precision).parent, data},
                                          {cell.results(runtime), cell.replicates(runtime), cell.errors(runtime)})
    return paths


def cell_path_problems(root: Path) -> list:
    """Cells whose stages' deps and outs in dvc.yaml are not those pipelines/cells.py names."""
    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
    params = load_params(root / "params.yaml")
    declared = {}
    for stage in stages:
        verb = stage.name.split("@")[0].split("_")[0]
        if verb in ("train", "evaluate", "export", "validate"):
            if verb == "validate":
                verb = f"validate {Path(shlex.split(stage.cmd)[shlex.split(stage.cmd).index('--ir') + 1]).parent.name}"
            paths = {Path(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)}
            declared.setdefault(verb, []).append(({p for p in paths if p.parts[0] in ("data", "models")},
                                                  {Path(o.def_path) for o in stage.outs}))
    expected = {}
    for cell in cells.selected(params.run_templates, params.run_datasets, params.run_seeds):
        for verb, pair in expected_cell_paths(cell, params.export["precisions"]).items():
            expected.setdefault(verb, []).append(pair)
    key = lambda pairs: sorted((sorted(map(str, d)), sorted(map(str, o))) for d, o in pairs)  # noqa: E731
    return [f"{verb}: dvc.yaml declares {key(declared.get(verb, []))[:1]}..., cells.py names {key(pairs)[:1]}..."
            for verb, pairs in expected.items() if key(declared.get(verb, [])) != key(pairs)]


def test_dvc_yaml_names_every_cell_path_as_pipelines_cells_does():
    assert cell_path_problems(ROOT) == []


# Command flags that name a prepared split, and its role; and those that name prepared folders.
SPLIT_FLAGS = {"test": splits.TEST, "val": splits.VAL}
PREPARED_FLAGS = {"prepare": "out", "train": "data", "export": "data"}


def split_path_problems(root: Path) -> list:
    """Stages whose commands name a prepared dataset's folder, or a split in it, otherwise than
    pipelines/splits.py does (`<PREPARED>/<dataset>/<role>.json`)."""
    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
    found = []
    for stage in stages:
        args, verb = command_args(stage.cmd), stage.name.split("@")[0].split("_")[0]
        folders = [Path(args[PREPARED_FLAGS[verb]])] if verb in PREPARED_FLAGS else []
        for flag, role in SPLIT_FLAGS.items():
            if flag in args:
                path = Path(args[flag])
                folders.append(path.parent)
                if path != splits.split_file(path.parent, role):
                    found.append(f"{stage.name}: --{flag} {path} is not the {role} split pipelines/splits.py names "
                                 f"({splits.split_file(path.parent, role)})")
        found += [f"{stage.name}: {folder} is not a folder of {splits.PREPARED}" for folder in folders
                  if folder.parent != splits.PREPARED]
        if verb == "speed" and Path(args["data"]) != splits.PREPARED:
            found.append(f"{stage.name}: --data {args['data']} is not {splits.PREPARED}")
    return found


def test_dvc_yaml_names_every_prepared_split_as_pipelines_splits_does():
    assert split_path_problems(ROOT) == []
