"""Anonymize a folder of images against a recognizer with K-A3, and verify what was written.

1. read every image (nothing is written if one fails); labels come from first-level
   sub-folder names (a class name of the model's data set, or a class index), otherwise the
   model's own top-1 on the clean image is the label to hide;
2. images of another size than the model's input are attacked at their own size through
   the model's resize (`ResizedInput`: bilinear, antialiased, differentiable), so the
   perturbation lives at the original size and the verification, which resizes the written
   file the same way, sees what the attack saw ("resize" policy; "refuse" stops with an
   error instead). A channel-count mismatch is always refused;
3. K-A3 runs on the images grouped by size, in batches of ``batch_size``; the groups
   k = 2..K+1 are assigned over the whole folder through a seeded permutation, so that
   every class spreads over the groups;
4. images are written to the output folder under their relative paths in their own format
   (8-bit; JPEG at quality 95), then **re-read** and judged: the rank of the label in the
   model's scores, the K-anonymity check of eq. 6 over the folder, MSE and SSIM (MS-SSIM for
   large colour images) between each original and its anonymized file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab.attacks.ka3 import KA3, group_k
from robustlab.core.contract import RobustModel, eval_mode
from robustlab.core.errors import ConfigError, DataError
from robustlab.data.images import read_image, write_image
from robustlab.data.resize import resize_images
from robustlab.evaluate.perceptual import mse, similarity
from robustlab.evaluate.ranks import DEFAULT_TOLERANCE, KAnonymityCheck, kanonymity_check, label_ranks
from robustlab.privacy.paths import InputImage, check_paths, scan_images
from robustlab.privacy.resized import ResizedInput

SIZE_POLICIES = ("resize", "refuse")


@dataclass
class AnonymizeResult:
    """Per-image records (JSON-able dicts), the K-anonymity check, skipped files, settings."""

    records: list[dict[str, Any]]
    check: KAnonymityCheck
    similarity_name: str
    skipped: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


def _labels(
    images: Sequence[InputImage], class_names: Sequence[str] | None, num_classes: int
) -> list[int | None]:
    names = {name: i for i, name in enumerate(class_names or [])}
    out: list[int | None] = []
    for img in images:
        label = None
        if img.folder is not None:
            if img.folder in names:
                label = names[img.folder]
            elif img.folder.isdigit() and int(img.folder) < num_classes:
                label = int(img.folder)
        out.append(label)
    return out


def _to_model_size(images: Sequence[InputImage], shape: tuple[int, int, int], policy: str) -> torch.Tensor:
    c, h, w = shape
    batch = []
    for img in images:
        if img.image.shape[0] != c:
            raise ConfigError(f"{img.path} has {img.image.shape[0]} channel(s), the model takes {c}")
        if tuple(img.image.shape[1:]) != (h, w):
            if policy == "refuse":
                raise ConfigError(
                    f"{img.path} is {img.image.shape[2]}x{img.image.shape[1]} (WxH), the model takes "
                    f"{w}x{h}; resize it first or use the 'resize' size policy"
                )
            batch.append(resize_images(img.image.unsqueeze(0), (h, w))[0])
        else:
            batch.append(img.image)
    return torch.stack(batch)


@torch.no_grad()
def _scores(model: RobustModel, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def anonymize_folder(
    model: RobustModel,
    input_dir: str | Path,
    output_dir: str | Path,
    K: int = 5,
    *,
    report_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    size_policy: str = "resize",
    overwrite: bool = False,
    attack_params: dict[str, Any] | None = None,
    batch_size: int = 256,
    seed: int = 0,
    retries: int = 2,
    tolerance: float = DEFAULT_TOLERANCE,
) -> AnonymizeResult:
    """Anonymize every image of `input_dir` into `output_dir` (see the module doc); return the
    verification. `report_dir` is only checked here (the caller writes the report into it);
    it defaults to a sibling "<output_dir>-report". `attack_params` go to `KA3` (its ``margin``
    defaults to 0.5 here); images the written 8-bit file no longer hides are re-attacked up to
    `retries` times with a doubled margin."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    report_dir = Path(report_dir) if report_dir is not None else default_report_dir(output_dir)
    if size_policy not in SIZE_POLICIES:
        raise ConfigError(f"size policy must be one of {SIZE_POLICIES}, got {size_policy!r}")
    if not 1 <= K < model.num_classes:
        raise ConfigError(
            f"K = {K} needs K + 1 <= {model.num_classes} classes (the true label must fall to rank K + 1); "
            f"choose K in 1..{model.num_classes - 1}"
        )
    params = dict(attack_params or {})
    margin = float(params.pop("margin", 0.5))
    KA3(K=K, seed=seed, margin=margin, **params)  # bad attack parameters fail before any file is written
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must lie in [0, 1), got {tolerance!r}")
    check_paths(input_dir, output_dir, report_dir, overwrite)
    images, skipped = scan_images(input_dir)
    with eval_mode(model):
        return _anonymize(model, images, skipped, input_dir, output_dir, report_dir, K, class_names, size_policy,
                          params, margin, batch_size, seed, retries, tolerance)


def _anonymize(model, images, skipped, input_dir, output_dir, report_dir, K, class_names, size_policy, params,
               margin, batch_size, seed, retries, tolerance) -> AnonymizeResult:
    x = _to_model_size(images, model.input_shape, size_policy)
    known = _labels(images, class_names, model.num_classes)
    clean_scores = _scores(model, x, batch_size)
    top1 = clean_scores[:, : model.num_classes].argmax(dim=1)
    y = torch.tensor([top1[i] if lab is None else lab for i, lab in enumerate(known)], dtype=torch.int64)
    k = torch.empty(len(images), dtype=torch.int64)
    k[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))] = group_k(len(images), K)
    written = [output_dir / img.relative for img in images]
    pending = list(range(len(images)))
    for _ in range(retries + 1):  # re-attack, with a doubled margin, images that 8-bit rounding un-hid
        attack = KA3(K=K, seed=seed, margin=margin, **params)
        subset = [images[i] for i in pending]
        anonymized, success = _attack_by_shape(attack, model, subset, y[pending], k[pending], batch_size)
        for i, anon, ok in zip(pending, anonymized, success, strict=True):
            if ok or not written[i].exists():  # a failed retry keeps the earlier file
                write_image(anon, written[i], like=images[i].path)
        adv_scores = _scores(model, _reread(written, images, model.input_shape), batch_size)
        ranks_after = label_ranks(adv_scores, y, model.num_classes)
        pending = [i for i in pending if int(ranks_after[i]) < int(k[i])]
        if not pending:
            break
        margin = 2 * margin if margin > 0 else 0.5
    reread = [read_image(p) for p in written]
    ranks_before = label_ranks(clean_scores, y, model.num_classes)
    ranks_after = label_ranks(adv_scores, y, model.num_classes)
    check = kanonymity_check(ranks_after, model.num_classes, K, tolerance)

    sim_name, sim, err = _similarities([img.image for img in images], reread)
    records = []
    for i, img in enumerate(images):
        records.append(
            {
                "file": str(img.relative),
                "label": int(y[i]),
                "label_source": "folder" if known[i] is not None else "model",
                "k": int(k[i]),
                "rank_before": int(ranks_before[i]),
                "rank_after": int(ranks_after[i]),
                "hidden": bool(ranks_after[i] >= k[i]),
                "top1_after": int(adv_scores[i, : model.num_classes].argmax()),
                "mse": float(err[i]),
                sim_name: float(sim[i]),
                "size": list(img.image.shape),
                "resized_for_model": tuple(img.image.shape[1:]) != tuple(model.input_shape[1:]),
            }
        )
    settings = {
        "K": K,
        "size_policy": size_policy,
        "seed": seed,
        "attack": attack.spec(),
        "retries": retries,
        "input_dir": str(input_dir),
        "output_dir": str(output_dir),
        "report_dir": str(report_dir),
    }
    return AnonymizeResult(
        records, check, sim_name, [str(p.relative_to(input_dir)) for p in skipped], settings
    )


def _reread(
    written: Sequence[Path], images: Sequence[InputImage], shape: tuple[int, int, int]
) -> torch.Tensor:
    """The written files, read back and brought to the model's size like the inputs were."""
    reread = [read_image(p) for p in written]
    for p, r, img in zip(written, reread, images, strict=True):
        if r.shape != img.image.shape:
            raise DataError(f"{p} was written as {tuple(r.shape)}, the original is {tuple(img.image.shape)}")
    return _to_model_size(
        [InputImage(p, p, r, None) for p, r in zip(written, reread, strict=True)], shape, "resize"
    )


def _attack_by_shape(
    attack: KA3,
    model: RobustModel,
    images: Sequence[InputImage],
    y: torch.Tensor,
    k: torch.Tensor,
    batch_size: int,
) -> tuple[list[torch.Tensor], list[bool]]:
    """K-A3 on each group of same-shape images at their own size (through `ResizedInput` when it
    differs from the model's), in batches; returns the anonymized images in input order and
    whether each reached its k (before 8-bit rounding)."""
    device = next(model.parameters()).device
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        shapes.setdefault(tuple(img.image.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(images)
    success = [False] * len(images)
    for shape, members in shapes.items():
        target = model if shape == tuple(model.input_shape) else ResizedInput(model, shape)
        for start in range(0, len(members), batch_size):
            idx = members[start : start + batch_size]
            x = torch.stack([images[i].image for i in idx]).to(device)
            result = attack(target, x, y[idx].to(device), criterion=attack.criterion_for(k[idx]))
            for j, i in enumerate(idx):
                out[i], success[i] = result.x_adv[j].cpu(), bool(result.success[j])
    return out, success  # type: ignore[return-value]


def _similarities(originals: Sequence[torch.Tensor], written: Sequence[torch.Tensor]):
    """(name, similarity (N,), mse (N,)), batching images of one shape together."""
    n = len(originals)
    sim, err = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    names = set()
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(originals):
        shapes.setdefault(tuple(img.shape), []).append(i)
    for idx in shapes.values():
        a = torch.stack([originals[i] for i in idx])
        b = torch.stack([written[i] for i in idx])
        name, values = similarity(a, b)
        names.add(name)
        sim[idx] = values.double()
        err[idx] = mse(a, b)
    return ("ssim" if len(names) != 1 else names.pop()), sim, err


def default_report_dir(output_dir: Path) -> Path:
    """The report folder beside the output folder: "<output_dir>-report"."""
    output_dir = Path(output_dir)
    return output_dir.parent / f"{output_dir.name.rstrip('/') or 'anonymized'}-report"
