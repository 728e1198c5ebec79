"""The report as files: benchmark.md from template.md and the tables, benchmark.csv (the long table), summary.json
(what `dvc exp show` lists), the plots and their data, and the selected cells' prediction pictures."""

import json
import string
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipelines import legs, racing
from pipelines.cells import ERRORS_PICTURE_FILE, PICTURE_FILE
from pipelines.comparison import Comparison
from pipelines.decision import Decision
from pipelines.racing import Race
from pipelines.report import plots, tables, text, verdicts

TEMPLATE = Path(__file__).with_name("template.md")


@dataclass
class Inputs:
    """Everything the report is made of, read by pipelines.report.collect."""
    long: pd.DataFrame             # the long table (one row per cell x runtime) of the templates that finished
    every_long: pd.DataFrame       # the same with the cells the race stopped (benchmark.csv)
    segm: Comparison               # test segm mAP of the PyTorch models
    bbox: Comparison
    ir_measured: dict              # runtime -> collect.measured of segm_map
    errors: pd.DataFrame           # every cell's and runtime's dAPs (collect.errors)
    daps: dict                     # error type -> Comparison of its mask dAP (PyTorch)
    deploy_errors: dict            # (template, dataset) -> confusion matrix and error counts (collect.deploy_errors)
    classes: pd.DataFrame          # per-class AP
    curves: pd.DataFrame           # per-epoch validation
    stats: dict                    # per dataset, from prepare
    recipes: dict                  # per template, from train
    selected: list                 # the cells (pipelines.cells.Cell)
    metrics_dir: Path
    target: Comparison             # test segm mAP at the deployment target (the IR at deploy.precision)
    by_size: dict                  # object size (small, medium, large) -> Comparison of that segm AP (PyTorch)
    decision: Decision             # the one recommendation every section prints (pipelines.decision)
    race: dict                     # params.yaml's race
    raced: Race | None             # the race at its rung, replayed on the cells' validation records (None: off)
    stopped: dict                  # template -> the stopped record (pipelines.legs), for those the race stopped


def shown(inputs: Inputs, table: pd.DataFrame, **options) -> str:
    """A table of templates as markdown, with a "stopped at epoch e" row for each template the race stopped."""
    return text.with_stopped(text.markdown(table, **options), table, inputs.stopped)


def race_section(inputs: Inputs) -> dict:
    """The placeholders of the race section: how it judged, each template at the rung, what it saved."""
    race = inputs.race
    if not race["enabled"]:
        return {"race": "The race is off (`race.enabled: false`): every template trained its whole schedule."}
    if inputs.raced is None or not inputs.raced.rungs:
        return {"race": "Fewer than two templates have reached the rung on every dataset and seed: nothing was raced."}
    keep = f" Kept to the end whatever happens (`race.keep`): {', '.join(race['keep'])}." if race["keep"] else ""
    halving = HALVING.format(eta=race["eta"]) if race["eta"] > 1 else ""
    lines = [RACE.format(rung=race["rung"], margin=race["margin"]) + halving + keep,
             shown(inputs, text.race_table(tables.race_standings(inputs.raced, tuple(race["keep"]), race["margin"])),
                   floatfmt=".3f")]
    spent = tables.race_spent(inputs.every_long, inputs.stopped)
    if spent:
        lines.append(SPENT.format(share=spent["epochs"] / spent["full_epochs"], **spent,
                                  seconds_share=spent["seconds"] / spent["full_seconds"]))
    for template, record in inputs.stopped.items():
        behind = record["behind"]
        why = (f", for budget (halving: place {record['place']} of {record['of']} at the rung, not separated from "
               "the leader)" if record.get("why") == racing.HALVING else "")
        lines.append(f"- **{template}** {legs.describe(record)}{why}: {behind['difference']:.2f} points "
                     f"[{behind['low']:.2f}, {behind['high']:.2f}] behind {record['leader']} on the validation average "
                     f"(P {behind['p_better']:.3f}). Revive it by training on from its rung checkpoint "
                     f"(`race/rung/<cell>/resume.pt`): `dvc exp run -S 'race.keep=[{template}]'`.")
    return {"race": "\n\n".join(lines)}


RACE = ("Each template first trained {rung:.0%} of its own schedule (rounded up) on every dataset and seed. There the "
        "race compared the templates on **PyTorch validation segm mAP**, averaged over datasets (no IR exists yet, and "
        "no test image is looked at before the race is over): each cell's best epoch so far, paired over the "
        "validation images' resamples, with the seeds' training noise, as the test numbers are compared below. A "
        "template is stopped when the paired 95% interval of (leader - template) lies wholly above {margin:g} points; "
        "a stopped template trains no further and is neither evaluated on test, exported nor validated.")
HALVING = (" Then, for budget, halving (`race.eta: {eta}`): of the n templates still in the race, only the best "
           "ceil(n / {eta}) by validation average (and any equal to the last of them) go on, so a template the noise "
           "cannot separate from the leader may be stopped too (successive halving, as ASHA does; the report marks "
           "those stops).")
SPENT = ("Training spent: **{epochs} of {full_epochs} epochs ({share:.0%})** of the full grid's, {seconds:.0f} s of "
         "about {full_seconds:.0f} s ({seconds_share:.0%}; a stopped cell's remaining epochs estimated at its own "
         "pace); "
         "{stopped_cells} of {cells} cells were stopped, and skipped their test evaluation, export and validation.")


def results_sections(inputs: Inputs, epochs: pd.DataFrame) -> dict:
    """The placeholders of the accuracy sections."""
    long, segm = inputs.long, inputs.segm
    complexity = tables.complexity(long)
    seeds = sorted(long["seed"].unique())
    return {
        "recommendation": "\n\n".join(verdicts.recommendation(inputs.decision, inputs.target, stopped=inputs.stopped)),
        "seeds": f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}",
        "segm_table": shown(inputs, text.score_table(tables.scores(long, segm), complexity, segm.datasets, "segm")),
        "bbox_table": shown(inputs, text.score_table(tables.scores(long, inputs.bbox, "bbox_map"), complexity,
                                                     segm.datasets, "bbox")),
        "epochs_table": text.markdown(epochs.assign(best=text.yes_no(epochs["best"]))) if len(epochs)
        else "No training has recorded its epochs yet.",
        "noise_table": text.markdown(text.noise_table(segm.noise_table()), floatfmt=".2f"),
        "ranks_table": shown(inputs, text.ranks_table(segm.ranks_table()), floatfmt=".2f"),
        "pairs_table": text.markdown(text.pairs_table(segm.pairs_table(), segm.training_measured), floatfmt=".3f"),
    }


def size_sections(inputs: Inputs) -> dict:
    """The placeholders of the AP-by-object-size section: per dataset and template, segm mAP and AP small / medium
    / large with both noises' intervals beside the latency (side by side at the target where timed, else the
    cell's own), and the best AP small against each other template."""
    cell_latency = tables.latency(inputs.long)
    latency = {(t, d): cell_latency.loc[t, d] for t in cell_latency.index for d in cell_latency.columns}
    if inputs.decision.speeds is not None:
        for template in inputs.segm.templates:
            for dataset in inputs.segm.datasets:
                median = inputs.decision.speeds.latency(template, dataset)[0]
                if not pd.isna(median):
                    latency[(template, dataset)] = median
    rows = tables.by_size(inputs.long, inputs.segm, inputs.by_size)
    small = inputs.by_size.get("small")
    pairs = tables.small_differences(small) if small is not None else pd.DataFrame()
    # Training noise counts where it was measured on the datasets compared (one without small objects has none).
    measured = len(pairs) and all(small.noise[d].df > 0 for d in pairs["dataset"].unique())
    return {
        "size_table": shown(inputs, text.size_table(rows, latency)) if len(rows) else "No evaluation yet.",
        "small_pairs": text.markdown(text.difference_table(pairs, "AP small", measured),
                                     floatfmt=".3f") if len(pairs) else
        "Only one template has AP small measured on each dataset: nothing to compare.",
    }


def runtime_sections(inputs: Inputs, tradeoff: pd.DataFrame) -> dict:
    """The placeholders of the deployment sections: speed, IRs, thresholds."""
    long, label = inputs.long, tables.precision_label
    note = ("On this machine's CPU, on each dataset's first test image resized as the template says (a keep_ratio "
            "template pads it only to a multiple of 32): batch-1 latency is the median of repeated runs after warm-up; "
            "OpenVINO throughput runs asynchronous requests under its throughput hint. Medians over datasets and seeds. "
            "FP32 and FP16 IRs compute in f32; BF16 is the FP32 IR computed in bfloat16, what OpenVINO does by default "
            "on CPUs with AMX or AVX512-BF16.")
    if tables.bf16_ran_in_f32(long):
        note += " This CPU has no bfloat16 arithmetic, so BF16 ran in f32 here."
    decision = inputs.decision
    if decision.speeds is None:
        together = "The `speed` stage has not timed the templates side by side yet."
    else:
        together = shown(inputs, text.side_by_side_table(
            tables.side_by_side(decision.speeds, inputs.segm.templates, decision.template), decision.template))
    return {
        "target": label(decision.runtime),
        "side_by_side_table": together,
        "ranking_changes": text.markdown(text.ranking_table(decision.ranking_changes, label(decision.runtime)))
        if len(decision.ranking_changes) else
        f"None: on every dataset and on average, {label(decision.runtime)} orders the templates as PyTorch does.",
        "tradeoff_table": shown(inputs, text.tradeoff_table(tradeoff), floatfmt=".2f"),
        "ir_table": shown(inputs, text.ir_table(tables.ir_against_pytorch(long, inputs.ir_measured), label)),
        "speed_note": note,
        "speed_table": shown(inputs, text.speed_table(tables.speed(long), label), floatfmt=".2f"),
        "deploy_table": shown(inputs, text.deploy_table(tables.deploy(long), label), floatfmt=".3g"),
    }


def pictures(inputs: Inputs, picture: str = PICTURE_FILE, suffix: str = "") -> tuple[str, dict]:
    """A section of the pictures evaluate drew (first seed of each template x dataset) and the files it links,
    which go to reports/predictions/."""
    first = min(c.seed for c in inputs.selected)
    lines, files = [], {}
    for cell in (c for c in inputs.selected if c.seed == first):
        source = cell.metrics_dir(inputs.metrics_dir) / picture
        if source.is_file():
            files[f"{cell.name}{suffix}.jpg"] = source
            lines += [f"#### {cell.template} on {cell.dataset}",
                      f"![{cell.template} on {cell.dataset}](predictions/{cell.name}{suffix}.jpg)"]
    return "\n\n".join(lines) or "No pictures yet.", files


def confusion(inputs: Inputs, template: str | None) -> str:
    """One confusion matrix per dataset of `template`, class names from prepare's statistics."""
    blocks = []
    for dataset in inputs.segm.datasets:
        found = inputs.deploy_errors.get((template, dataset))
        if found is None or dataset not in inputs.stats:
            continue
        names = list(inputs.stats[dataset]["labels"]) + ["background"]
        table = pd.DataFrame(found["confusion"], columns=names)
        table.insert(0, "true \\ predicted", names)
        blocks.append(f"#### {dataset}\n\n{text.markdown(table)}")
    return "\n\n".join(blocks) or "No evaluation yet."


def why_sections(inputs: Inputs, recommended: str | None) -> tuple[dict, dict]:
    """The placeholders of the errors section, and the pictures it links."""
    separating = tables.separating(tables.why(inputs.segm, inputs.daps))
    error_pictures, files = pictures(inputs, ERRORS_PICTURE_FILE, "-errors")
    return {
        "why_lines": "\n".join(verdicts.why(separating, inputs.deploy_errors, tables.tile_sizes(inputs.recipes))),
        "dap_table": shown(inputs, text.dap_table(tables.dap_table(inputs.daps))),
        "recommended": recommended or "none",
        "confusion": confusion(inputs, recommended),
        "error_pictures": error_pictures,
        "runtime_errors": text.markdown(text.runtime_table(tables.runtime_errors(inputs.errors),
                                                          tables.precision_label)),
    }, files


def data_sections(inputs: Inputs) -> dict:
    """The placeholders of the per-class, datasets, templates and provenance sections."""
    per_class = [f"### {d}\n\n{text.markdown(tables.per_class_segm(inputs.classes, d))}"
                 for d in inputs.segm.datasets if not tables.per_class_segm(inputs.classes, d).empty]
    left_out = tables.left_out(inputs.stats)
    sizes, shares = tables.object_sizes(inputs.stats), tables.small_at_input(inputs.stats, inputs.recipes)
    return {
        "per_class": "\n\n".join(per_class) or "No evaluation yet.",
        "datasets_table": text.markdown(tables.datasets(inputs.stats)),
        "skipped": ", ".join(f"{d} {len(s['skipped_images'])}" for d, s in inputs.stats.items()) or "none",
        "classes_table": text.markdown(tables.classes(inputs.stats)),
        "sizes_table": text.markdown(text.object_sizes_table(sizes)) if not sizes.empty else
        "No object sizes recorded (prepare the data again).",
        "small_table": text.markdown(text.small_at_input_table(shares)) if not shares.empty else
        "No template has been trained yet.",
        "too_small": "\n".join(verdicts.too_small(shares)),
        "left_out": text.markdown(left_out) if not left_out.empty else
        "Nothing: every image and object was used as shipped.",
        "recipes": "\n\n".join(f"### {name}\n\n```yaml\n{yaml.safe_dump(recipe, sort_keys=False)}```"
                               for name, recipe in inputs.recipes.items()),
        "provenance": text.markdown(tables.provenance(inputs.long)),
        "first_seed": str(min(c.seed for c in inputs.selected)),
    }


def _number(value):
    return None if pd.isna(value) else round(float(value), 3)


def race_summary(inputs: Inputs) -> dict:
    """summary.json's race: on or off, the rung and eta, who stopped at which epoch and why, and the training it
    spent."""
    enabled = inputs.race["enabled"]
    found = {"enabled": enabled, "rung": inputs.race["rung"] if enabled else None,
             "eta": inputs.race["eta"] if enabled else None,
             "stopped": {t: r[legs.STOPPED] for t, r in inputs.stopped.items()},
             "why": {t: r.get("why", racing.BEHIND) for t, r in inputs.stopped.items()}}
    spent = tables.race_spent(inputs.every_long, inputs.stopped) if inputs.race["enabled"] else {}
    if spent:
        found.update(epochs_spent=spent["epochs"], epochs_full=spent["full_epochs"],
                     epochs_share=round(spent["epochs"] / spent["full_epochs"], 3))
    return found


def summary(compared: Comparison, target: Comparison, decision: Decision) -> dict:
    """What `dvc exp show` lists. `recommended`: keys that mean the same in every experiment, whichever templates
    it ran (the template to fine-tune, the criterion that decided, the deployment runtime, its average segm mAP
    there and interval, whether training noise was measured and whether speed was borderline); then per template,
    the PyTorch models' average and per-dataset test segm mAP with the bounds of their 95% intervals."""
    choice = decision.overall
    found = {"recommended": {"template": choice.template, "decided_by": choice.decided_by,
                             "runtime": decision.runtime, "segm_map_average": None, "segm_map_average_low": None,
                             "segm_map_average_high": None, "training_noise_measured": compared.training_measured,
                             "speed_borderline": bool(choice.borderline)}}
    for template in compared.templates:
        found[template] = {}
        for column in ["average"] + compared.datasets:
            low, high = compared.interval(template, column)
            found[template].update({f"segm_map_{column}": _number(compared.point(template, column)),
                                    f"segm_map_{column}_low": _number(low), f"segm_map_{column}_high": _number(high)})
    if choice.template:
        low, high = target.interval(choice.template, "average")
        found["recommended"].update({"segm_map_average": _number(target.point(choice.template, "average")),
                                     "segm_map_average_low": _number(low), "segm_map_average_high": _number(high)})
    return found


def build(inputs: Inputs) -> tuple[dict, dict, dict]:
    """(texts, drawings, folders) for pipelines.report.publish."""
    epochs = tables.epoch_averages(inputs.curves, inputs.segm.datasets)
    tradeoff = tables.tradeoff(inputs.long, inputs.target, inputs.decision.speeds)
    scores = tables.scores(inputs.long, inputs.segm)
    predictions, picture_files = pictures(inputs)
    errors_values, error_files = why_sections(inputs, inputs.decision.template)
    values = {**results_sections(inputs, epochs), **race_section(inputs), **size_sections(inputs), **runtime_sections(inputs, tradeoff),
              **data_sections(inputs),
              **errors_values, "predictions": predictions}
    markdown = string.Template(TEMPLATE.read_text()).substitute(values)
    data = plots.plot_data(tradeoff, scores, epochs)
    texts = {"benchmark.md": markdown, "benchmark.csv": inputs.every_long.to_csv(index=False),
             "summary.json": json.dumps({**summary(inputs.segm, inputs.target, inputs.decision),
                                         "race": race_summary(inputs)}, indent=2),
             **{f"{plots.DATA_FOLDER}/{name}": json.dumps(records, indent=1) for name, records in data.items()}}
    drawings = {"segm_map.png": lambda path: plots.segm_bars(scores, path),
                "accuracy_latency.png": lambda path: plots.tradeoff_scatter(tradeoff, path),
                "epochs.png": lambda path: plots.epoch_curves(epochs, path)}
    return texts, drawings, {"predictions": {**picture_files, **error_files}}
