"""The ORL (AT&T) and Yale face databases, as their authors distribute them.

ORL: folders s1..s40, each with 1.pgm..10.pgm (92x112 grey). Yale: a flat folder of
extensionless GIFs `subjectNN.condition` (320x243 grey), 15 subjects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from robustlab.core.errors import DataError
from robustlab.data.dataset import LabelledImages
from robustlab.data.folder import load_folder_pool, stack_images
from robustlab.data.locate import data_home, describe, shared_faces_dirs

YALE_CONDITIONS = frozenset(
    {
        "centerlight",
        "glasses",
        "happy",
        "leftlight",
        "noglasses",
        "normal",
        "rightlight",
        "sad",
        "sleepy",
        "surprised",
        "wink",
    }
)
_ORL_CLASS = re.compile(r"s\d+")
_YALE_FILE = re.compile(r"subject(\d+)\.([a-z]+)(\.[a-z]+)?", re.IGNORECASE)


def _is_orl(folder: Path) -> bool:
    return (folder / "s1").is_dir()


def _is_yale(folder: Path) -> bool:
    return folder.is_dir() and any(_yale_match(p) for p in folder.iterdir())


def _yale_match(path: Path) -> re.Match | None:
    m = _YALE_FILE.fullmatch(path.name)
    return m if m and m.group(2).lower() in YALE_CONDITIONS and path.is_file() else None


def faces_candidates(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for "orl" / "yale": root, root/<name>, $ROBUSTLAB_DATA/<name>,
    then `shared/data/faces/<name>` beside any ancestor of the current dir or of this package."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root).expanduser(), Path(root).expanduser() / name]
    home = data_home()
    if home is not None:
        dirs.append(home / name)
    return dirs + [d for d in shared_faces_dirs(name) if d not in dirs]


def find_faces_dir(name: str, root: str | os.PathLike | None = None) -> tuple[Path | None, list[Path]]:
    """(first folder that holds the `name` ("orl" or "yale") face files or None, folders searched)."""
    test = _is_orl if name == "orl" else _is_yale
    searched = faces_candidates(name, root)
    for folder in searched:
        if folder.is_dir() and test(folder):
            return folder, searched
    return None, searched


def _require(name: str, root: str | os.PathLike | None) -> Path:
    folder, searched = find_faces_dir(name, root)
    if folder is None:
        shown = searched[:4] + ([Path(f"... ({len(searched) - 4} more)")] if len(searched) > 4 else [])
        raise DataError(
            f"{name} faces not found: looked in {describe(shown)}; pass root= or set $ROBUSTLAB_DATA"
        )
    return folder


def load_orl_pool(
    root: str | os.PathLike | None = None, resize: tuple[int, int] | int | None = None
) -> LabelledImages:
    """All 400 ORL images, (N, 1, 112, 92) float32 in [0, 1]; classes "s1".."s40" in numeric order."""
    return load_folder_pool(_require("orl", root), resize, keep=lambda n: bool(_ORL_CLASS.fullmatch(n)))


def load_yale_pool(
    root: str | os.PathLike | None = None, resize: tuple[int, int] | int | None = None
) -> LabelledImages:
    """All Yale images, (N, 1, 243, 320) float32 in [0, 1]; classes "subject01".."subject15"
    (labels from the NN of `subjectNN.condition`), files in (subject, condition) order."""
    folder = _require("yale", root)
    found = sorted(
        (int(m.group(1)), m.group(2).lower(), p) for p in folder.iterdir() if (m := _yale_match(p))
    )
    entries = [e for i, e in enumerate(found) if i == 0 or e[:2] != found[i - 1][:2]]  # one file per image
    if not entries:
        raise DataError(f"{folder} holds no Yale files named subjectNN.condition")
    subjects = sorted({s for s, _, _ in entries})
    index = {s: k for k, s in enumerate(subjects)}
    x = stack_images([p for _, _, p in entries], resize)
    y = torch.tensor([index[s] for s, _, _ in entries], dtype=torch.int64)
    return LabelledImages(x, y, [f"subject{s:02d}" for s in subjects], str(folder))
