"""The recommendation and why a template wins: sentences a person can act on, generated from the numbers.

The phrases are here, filled from the numbers; the report's fixed prose is in template.md.
"""

import numpy as np
import pandas as pd

from pipelines.comparison import Comparison
from pipelines.decision import SAME_COMPUTE, SPEED_MARGIN, Choice, Decision
from pipelines.legs import describe
from pipelines.report.tables import precision_label

UNMEASURED = ("Training noise was not measured (one seed per cell): the intervals hold the test images' noise only, "
              "so a difference called distinguishable here may be one training run's luck. Run two seeds or more "
              "(`-S 'run.seeds=[0,1]'`) to measure it.")
TARGET = ("For deployment as **{label}** on this machine (`deploy.precision`): each template's accuracy is its IR's "
          "as `validate` scored it, its speed as the `speed` stage timed every template side by side.")
ONLY_ONE = "Only {best} ran: select more templates in `run.templates` to compare."
ONLY_FINISHER = ("**Fine-tune `{choice}`**: {best} is the only template that finished the race; every other one was "
                 "behind it beyond both noises on validation at the rung.")
RACED = ("The race stopped {stopped} at the rung (\"The race\" below says why): compared on validation there, never "
         "on test, so the tables list them as stopped.")
CLEAR = ("**Fine-tune `{choice}`**: {best} has the best average {metric}, and every other template is below it beyond "
         "the 95% interval of the paired difference ({noises}).")
TIED = ("{best} has the best average {metric}, but {noises_subject} tell it apart from {others} (best minus each, "
        "95% interval reaching 0: {gaps}). **Fine-tune `{choice}`**: {why}.")
WHY = {
    "speed": "timed side by side, it is the fastest of them beyond the timing noise",
    "compute": (f"{{rest}}run at the same speed side by side (no time ratio clears {SPEED_MARGIN:.0%} with its whole "
                f"interval), and it needs the least compute (GFLOPs: {{gflops}}; within {SAME_COMPUTE:.0%} counts as "
                "the same)"),
    "order": (f"any of them would do: {{rest}}run at the same speed side by side (no time ratio clears "
              f"{SPEED_MARGIN:.0%} with its whole interval) on the same compute (GFLOPs within {SAME_COMPUTE:.0%}), and "
              "it comes first in `run.templates`"),
}
BUDGET = "**Fine-tune `{choice}`**: it is the only template within the latency budget."
DECIDED = "Decided by: **{criterion}**."
SLOWER = "Set aside as slower, side by side: {pairs} (beyond the {margin:.0%} margin with the whole 95% interval)."
BORDERLINE = ("Speed was borderline: {pairs}: the interval straddles the {margin:.0%} margin, so speed decided "
              "nothing here and another measurement might.")
OVER_BUDGET = "Over the latency budget of {budget:g} ms on this machine (side by side): {templates}."
ALL_OVER = ("Every template is over the latency budget of {budget:g} ms on this machine: the choice ignores the "
            "budget ({templates}).")
NO_SPEED = ("Speed was not measured side by side at this precision (the `speed` stage has not run): it decided "
            "nothing.")
BUSY = ("The machine was busy while the speed stage timed: other processes used {shares} of its CPU. Every template "
        "was timed in the same rounds, so the ratios hold; the absolute latencies are slower than an idle machine's.")
BF16_IN_F32 = ("This CPU has no bfloat16 arithmetic (AMX or AVX512-BF16): the BF16 target ran in f32 here, so its "
               "speed and accuracy are FP32's; on a CPU with bfloat16 both may differ.")
PYTORCH_DIFFERS = ("Judged by the PyTorch models instead, the choice would be `{choice}`: see \"Where the target ranks "
                   "differently\".")
PER_DATASET = "Per dataset (best, then those indistinguishable from it, then the choice among them and what decided it):"
DATASET_LINE = "- {dataset}: best {best}; indistinguishable: {group}; choose `{choice}` ({criterion})."


def _describe(compared: Comparison, template: str, dataset: str) -> str:
    low, high = compared.interval(template, dataset)
    bounds = "" if np.isnan(low) else f" [{low:.1f}, {high:.1f}]"
    return f"`{template}` ({compared.point(template, dataset):.1f}{bounds})"


def _gap(compared: Comparison, best: str, template: str) -> str:
    found = compared.difference(best, template, "average")
    bounds = "no interval" if np.isnan(found["low"]) else f"[{found['low']:.1f}, {found['high']:.1f}]"
    return f"`{template}` {found['difference']:+.1f} {bounds}"


def _ratios(pairs: dict) -> str:
    return ", ".join(f"`{t}` takes {r.point:.2f}x [{r.low:.2f}, {r.high:.2f}] the time of `{other}`"
                     for t, (other, r) in pairs.items())


def _why(choice: Choice) -> str:
    rest = "the others " if choice.slower else "they "
    gflops = ", ".join(f"`{t}` {g:.2f}" for t, g in choice.gflops.items())
    return WHY[choice.decided_by].format(rest=rest, gflops=gflops)


def overall(compared: Comparison, choice: Choice, metric: str) -> str:
    """The sentence that says which template to fine-tune, and why."""
    measured = compared.training_measured
    noises = "test images and training seeds" if measured else "test images only: training noise not measured"
    if choice.decided_by == "only one ran":
        return ONLY_ONE.format(best=_describe(compared, choice.template, "average"))
    if choice.decided_by == "budget":
        return BUDGET.format(choice=choice.template)
    if choice.decided_by == "accuracy":
        return CLEAR.format(choice=choice.template, best=_describe(compared, choice.best, "average"), metric=metric,
                            noises=noises)
    return TIED.format(best=_describe(compared, choice.best, "average"), metric=metric,
                       noises_subject="neither the test images nor the training seeds can" if measured
                       else "the test images (training noise not measured) cannot",
                       others=", ".join(f"`{t}`" for t in choice.tied),
                       gaps=", ".join(_gap(compared, choice.best, t) for t in choice.tied),
                       choice=choice.template, why=_why(choice))


def _latencies(found: dict) -> str:
    return ", ".join(f"`{t}` {m:.1f} ms [{lo:.1f}, {hi:.1f}]" for t, (m, lo, hi) in found.items())


def speed_notes(decision: Decision, choice: Choice) -> list:
    """What the speed criteria found: set aside, borderline, over budget, not measured, a busy machine."""
    lines = []
    if decision.speeds is None:
        lines.append(NO_SPEED)
    if choice.slower:
        lines.append(SLOWER.format(pairs=_ratios(choice.slower), margin=SPEED_MARGIN))
    if choice.borderline:
        lines.append(BORDERLINE.format(pairs=_ratios(choice.borderline), margin=SPEED_MARGIN))
    if choice.over_budget:
        within = set(choice.tied) | {choice.best}
        text = ALL_OVER if set(choice.over_budget) & within else OVER_BUDGET
        lines.append(text.format(budget=decision.budget_ms, templates=_latencies(choice.over_budget)))
    if decision.speeds is not None and decision.runtime == "ir_bf16" and "f32" in decision.speeds.computed_in():
        lines.append(BF16_IN_F32)
    busy = decision.speeds.busy() if decision.speeds is not None else {}
    if busy:
        lines.append(BUSY.format(shares=", ".join(f"{share:.0%} on {d}" for d, share in busy.items())))
    return lines


def recommendation(decision: Decision, compared: Comparison, metric: str = "segm mAP",
                   stopped: dict | None = None) -> list:
    """Paragraphs: the overall choice with what decided it, then the per-dataset list. `compared`: the target
    runtime's comparison; `stopped`: template -> the race's stopped record, for those it stopped."""
    choice = decision.overall
    if choice.template is None:
        return ["No template has a complete set of results yet: nothing to recommend."]
    lines = [] if compared.training_measured else [UNMEASURED]
    lines += [TARGET.format(label=precision_label(decision.runtime))]
    if stopped and choice.decided_by == "only one ran":
        lines.append(ONLY_FINISHER.format(choice=choice.template,
                                          best=_describe(compared, choice.template, "average")))
    else:
        lines.append(overall(compared, choice, metric))
    lines.append(DECIDED.format(criterion=choice.decided_by))
    if stopped:
        lines.append(RACED.format(stopped=", ".join(f"`{t}` ({describe(r)}, behind `{r['leader']}`)"
                                                    for t, r in stopped.items())))
    lines += speed_notes(decision, choice)
    if decision.pytorch_choice not in (None, choice.template):
        lines.append(PYTORCH_DIFFERS.format(choice=decision.pytorch_choice))
    per_dataset = [PER_DATASET]
    for dataset, found in decision.per_dataset.items():
        if found.template is None:
            per_dataset.append(f"- {dataset}: not run.")
            continue
        per_dataset.append(DATASET_LINE.format(dataset=dataset, best=_describe(compared, found.best, dataset),
                                               group=", ".join(f"`{t}`" for t in found.tied) if found.tied else "none",
                                               choice=found.template, criterion=found.decided_by))
    return lines + ["\n".join(per_dataset)]


# What to try against each error type (TIDE's): the hint that fits it.
HINTS = {
    "classification": "objects found but given the wrong class: more training images per class (or classes that "
                      "look alike merged)",
    "localisation": "objects found but their masks are off: a larger input size, a finer mask head or a longer "
                    "schedule",
    "both": "objects found with the wrong class and a poor mask at once: more images per class and a larger input",
    "duplicate": "objects detected twice: a lower NMS IoU threshold",
    "background": "detections on nothing: a higher score threshold, or more background in the training images",
    "missed_small": "objects not detected at all, most of them small (under 32 x 32 px): a larger input size or "
                    "tiling (`dvc exp run -S '++templates.{other}.tiling=auto'`, then `make compare`; the Datasets "
                    "section shows how small each template's input makes the test objects)",
    "missed_small_tiled": "objects not detected at all, most of them small (under 32 x 32 px), tiled as it is: "
                          "smaller tiles (`tiling: {{size: ...}}` below its {size} px) or a larger input size",
    "missed": "objects not detected at all: more proposals (RPN), more epochs, or anchors that fit their sizes",
}
WHY_LINE = ("- {dataset}: `{other}` is {gap:.1f} points of segm mAP behind `{best}`; {because}")
SEPARATES = ("what separates them most is {error}: fixing it would gain `{other}` {difference:+.1f} "
             "[{low:.1f}, {high:.1f}] points of mask AP50 more than `{best}`. That is {hint}.")
NOTHING_CLEAR = ("no error type separates them beyond both noises (the largest: {error}, {difference:+.1f} "
                 "[{low:.1f}, {high:.1f}]).")


def _hint(error: str, counts, other: str, tile: int | None = None) -> str:
    if error == "missed" and counts is not None:
        small, total = counts.loc["missed", "small"], counts.loc["missed", "all"]
        if not (total and small / total > 0.5):
            return HINTS["missed"]
        return HINTS["missed_small_tiled"].format(size=tile) if tile else HINTS["missed_small"].format(other=other)
    return HINTS[error]


def why(separating: pd.DataFrame, counts: dict, tiles: dict | None = None) -> list:
    """One line per dataset and template behind the best: the error type that separates them and what to try.
    `counts`: (template, dataset) -> error counts per size (pipelines.report.collect.deploy_errors); `tiles`:
    template -> its tile size, for the templates trained on tiles."""
    lines = []
    for row in separating.itertuples():
        values = dict(error=row.error, difference=row.difference, low=row.low, high=row.high, other=row.other,
                      best=row.best)
        found = counts.get((row.other, row.dataset), {}).get("counts")
        hint = _hint(row.error, found, row.other, (tiles or {}).get(row.other))
        because = SEPARATES.format(**values, hint=hint) if row.distinguishable \
            else NOTHING_CLEAR.format(**values)
        lines.append(WHY_LINE.format(dataset=row.dataset, other=row.other, best=row.best, gap=row.gap,
                                     because=because))
    return lines or ["Only one template ran: nothing to explain."]


# Where a template's input makes at least this share of a dataset's test objects smaller than COCO's small.
TOO_SMALL_SHARE = 25.0
TOO_SMALL = ("- `{template}` sees {small:.0f}% of the test objects of {dataset} under 32 x 32 pixels (COCO's small) at its "
             "{input} input, against {small_original:.0f}% in the images as they are: objects that small are hard to "
             "find and to outline; a larger input size or tiling may help (`dvc exp run -S "
             "'++templates.{template}.tiling=auto'`).")
TOO_SMALL_TILED = ("- `{template}` sees {small:.0f}% of the test objects of {dataset} under 32 x 32 pixels (COCO's small) at "
                   "its {input} input, against {small_original:.0f}% in the images as they are: smaller tiles or a "
                   "larger input size may help (`tiling: {{size: ...}}` in its recipe).")


def too_small(shares: pd.DataFrame) -> list:
    """One line per template and dataset whose input shrinks many test objects below COCO's small (a tiled
    template's input names its tiles)."""
    flagged = shares[shares["small"] >= TOO_SMALL_SHARE]
    return [(TOO_SMALL_TILED if " tiles" in row.input else TOO_SMALL).format(**row._asdict())
            for row in flagged.itertuples(index=False)] or [
        f"No template's input makes {TOO_SMALL_SHARE:.0f}% or more of a dataset's test objects smaller than COCO's "
        "small (32 x 32 pixels)."]
