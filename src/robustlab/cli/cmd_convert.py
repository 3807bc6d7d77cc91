"""`robustlab convert WEIGHTS.pt --out WEIGHTS.safetensors`: a PyTorch checkpoint (e.g. a RobustBench
zoo download) into safetensors, tensors only (`robustlab.models.zoo.convert_checkpoint`)."""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli.console import out, print_json
from robustlab.cli.options import JSON_HELP
from robustlab.models.zoo import convert_checkpoint


def convert_cmd(
    src: Path = typer.Argument(..., help="A torch.save file (.pt / .pth): a state dict or a wrapper holding one."),
    out_path: Path = typer.Option(..., "--out", help="The .safetensors file to write."),
    key: str = typer.Option(None, "--key", help="The wrapper key holding the state dict (default: the "
                            "file itself, else state_dict, model, model_state_dict or net)."),
    strip: list[str] = typer.Option(None, "--strip", help="A key prefix to remove (repeatable; "
                                    "default: module.)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Convert SRC to safetensors, the only weights robustlab loads.

    Reads SRC with torch.load(weights_only=True), which builds tensors and plain containers only
    and refuses anything else (a pickle carrying code is never run); keeps the tensors of the
    state dict, drops everything else (epoch, optimizer state), strips `module.`, and writes
    --out atomically. Then: robustlab evaluate --zoo-arch NAME --weights OUT.
    """
    done = convert_checkpoint(src, out_path, key=key, strip=tuple(strip) if strip else ("module.",),
                              overwrite=overwrite)
    if json_out:
        print_json(done)
        return
    where = f" (from {done['wrapper']!r})" if done["wrapper"] else ""
    stripped = f", {done['stripped']} keys stripped of a prefix" if done["stripped"] else ""
    out.print(f"Wrote [bold]{done['out']}[/bold]: {done['tensors']} tensors, {done['parameters']:,} values"
              f"{where}{stripped}.")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_cmd)
