"""overview: the report's first page, what was trained on what and how well, and what next.

The other pages of the report answer one question each; a newcomer opening it needs the run
in one screen first: the classes and their images, what was rejected and why, the model that
went forward and why, its validation error, the pairs it confuses, and the commands to go on.
"""

from html import escape

import pandas as pd

TOP_REASONS = 8
TOP_CONFUSED = 5


def reason_kind(reason: str) -> str:
    """A rejection's kind: its text up to the first colon (`http_error`, `too small`, ...)."""
    return reason.split(":", 1)[0].strip()


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def overview_html(
    summary: pd.DataFrame,
    rejected: pd.DataFrame,
    meta: dict,
    most_confused: pd.DataFrame,
    review_images: int,
) -> str:
    """The page, from verify's summary and rejections, the exported model.json, interpret's
    most-confused pairs (of the model that went forward) and the length of the review queue."""
    kept = summary["kept"].astype(int)
    classes = table(
        ["class", "images kept", "rejected", "left out by max_images"],
        summary[["class", "kept", "rejected", "skipped"]].values.tolist(),
    )
    kinds = rejected["reason"].map(reason_kind).value_counts().head(TOP_REASONS)
    rejections = (
        table(["reason", "images"], [[kind, count] for kind, count in kinds.items()])
        if len(kinds)
        else "<p>None.</p>"
    )
    metrics = meta["metrics"]
    experiment = meta.get("experiment")
    chosen = f"{meta['arch']}, {meta['stage']} at {meta['image_size']} px" + (
        f", experiment {experiment} ({meta['experiment_reason']})" if experiment else ""
    )
    confused = (
        table(
            ["actual", "predicted as", "validation images"],
            most_confused.head(TOP_CONFUSED)[["actual", "predicted", "count"]].values.tolist(),
        )
        if len(most_confused)
        else "<p>No pair is confused often enough to list (interpret.min_val).</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The run</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 1rem auto; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; }}
.big {{ font-size: 1.4rem; }}
</style></head><body>
<h1>The run</h1>
<p class="big">{len(summary)} classes, {int(kept.sum())} images;
validation error <b>{100 * metrics["error_rate"]:.1f} %</b>
(accuracy {100 * metrics["accuracy"]:.1f} %, loss {metrics["valid_loss"]:.4f}).</p>
<h2>The model that went forward</h2>
<p>{escape(chosen)}.<br>{escape(meta["stage_reason"])}.</p>
<h2>The data</h2>
{classes}
<h2>Rejected, by reason</h2>
{rejections}
<h2>Most confused</h2>
{confused}
<h2>What next</h2>
<ul>
<li>Review the {review_images} images whose labels are most in doubt:
<code>imgclf clean</code> (in the browser) or <code>results/interpret/review.csv</code> and
<code>imgclf review</code>; then <code>snakemake --cores 4</code> reruns from the split.</li>
<li>Classify new images: <code>imgclf predict results/export photo.jpg</code>;
put the model in front of people: <code>imgclf serve results/export</code>.</li>
<li>The rest of this report: the data, training curves, interpretation and cleaning pages.</li>
</ul>
</body></html>
"""
