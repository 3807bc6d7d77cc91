"""`robustlab anonymize`: hide the identity of images from a recognizer with K-A3 (paper 001).

Writes the anonymized images to --out (same relative paths, sizes and formats; never over the
inputs) and a verification report (report.md, report.json, rank_pmf.png) to --report, by default
the sibling folder "OUT-report".
"""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli.console import err, out, print_json
from robustlab.cli.options import BATCH_HELP, BATCH_SIZE, DEVICE_HELP, JSON_HELP, PARAM_HELP, SEED_HELP, parse_pairs
from robustlab.cli.vocabulary import out_folder
from robustlab.core.errors import DataError
from robustlab.core.runtime import pick_device
from robustlab.data.spec import trained_on
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config


def _class_names(doc: dict, input_dir: Path) -> list[str] | None:
    """Class names of the checkpoint's data set, when sub-folder names are not class indices."""
    folders = [p.name for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not folders or all(f.isdigit() for f in folders):
        return None
    data = trained_on(doc)
    if data is None:
        return None
    try:
        return list(data.load().classes)
    except DataError:
        return None


def anonymize_cmd(
    input_dir: Path = typer.Argument(
        ..., help="Folder of images (sub-folder per class when labels are known)."
    ),
    output_dir: Path = typer.Argument(None, hidden=True, help="Old spelling of --out (deprecated)."),
    out_dir: Path = typer.Option(None, "--out", help="Where to write the anonymized images (outside INPUT_DIR)."),
    model_path: Path = typer.Option(..., "--model", help="Checkpoint of the recognizer to hide from."),
    k: int = typer.Option(5, "--k", min=1, help="K: anonymity level (groups k = 2..K+1)."),
    steps: int = typer.Option(200, "--steps", min=1, help="K-A3 iterations per batch."),
    lr: float = typer.Option(0.01, "--lr", help="K-A3 Adam step size (pixel scale)."),
    similarity: str = typer.Option("cw_ssim", "--similarity", help="cw_ssim or ssim (eq. 7's s)."),
    targets: str = typer.Option("ranked", "--targets", help="ranked (r(2..k)) or random target labels."),
    param: list[str] = typer.Option(None, "--param", "-p", help="For K-A3 (e.g. growth=2). " + PARAM_HELP),
    size_policy: str = typer.Option("resize", "--size-policy", help="resize (map back) or refuse."),
    report_dir: Path = typer.Option(None, "--report", help="Verification report folder (default OUT-report)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into non-empty output/report folders."),
    tolerance: float = typer.Option(0.02, "--tolerance", help="Slack allowed over 1/K in the pmf check."),
    retries: int = typer.Option(2, "--retries", min=0, help="Re-attacks of files 8-bit rounding un-hid."),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", min=1, help=BATCH_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Anonymize the images of INPUT_DIR against MODEL into --out, then verify the written files."""
    output_dir = out_folder(out_dir, output_dir, "anonymize")
    from robustlab.privacy.anonymize import anonymize_folder, default_report_dir
    from robustlab.privacy.report_writer import write_anonymize_report

    dev = pick_device(device)
    doc = read_checkpoint_config(model_path)
    model = load_checkpoint(model_path, dev)
    params = {"steps": steps, "lr": lr, "similarity": similarity, "targets": targets}
    params.update(parse_pairs(param, "--param"))
    report_dir = report_dir or default_report_dir(output_dir)
    names = _class_names(doc, input_dir) if input_dir.is_dir() else None
    result = anonymize_folder(
        model,
        input_dir,
        output_dir,
        k,
        report_dir=report_dir,
        class_names=names,
        size_policy=size_policy,
        overwrite=overwrite,
        attack_params=params,
        batch_size=batch_size,
        seed=seed,
        retries=retries,
        tolerance=tolerance,
    )
    files = write_anonymize_report(result, report_dir)
    n = len(result.records)
    hidden = sum(r["hidden"] for r in result.records)
    if json_out:
        print_json(
            {
                "output": str(output_dir),
                "report": {k_: str(v) for k_, v in files.items()},
                "images": n,
                "hidden": hidden,
                "kanonymity": result.check.__dict__,
            }
        )
    else:
        out.print(f"anonymized {n} images into [bold]{output_dir}[/bold]; label ranked >= k in {hidden}/{n}")
        out.print(result.check.summary())
        out.print(f"report: {files['markdown']}")
    if not result.check.passed:
        err.print(f"error: the K-anonymity check failed on the written files: {result.check.summary()} "
                  f"(images and report written; see {files['markdown']})", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("anonymize")(anonymize_cmd)
