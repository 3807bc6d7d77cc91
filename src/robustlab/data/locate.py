"""Where data sets are looked for on disk, and whether a download could reach the network."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

#: Environment variable naming robustlab's data directory (one sub-folder per data set).
DATA_ENV = "ROBUSTLAB_DATA"
#: Where Debian's dataset-* packages install data (e.g. dataset-fashion-mnist).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def data_home() -> Path | None:
    """`$ROBUSTLAB_DATA` as a path, or None when unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/robustlab` (default `~/.cache/robustlab`): downloads go here without
    `$ROBUSTLAB_DATA`."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "robustlab"


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    out = []
    for p in paths:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def candidate_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders to search for data set `name`, in order.

    `root` and `root/<name>` when `root` is given, then `$ROBUSTLAB_DATA/<name>`,
    `/usr/share/datasets/<name>` and the download cache `~/.cache/robustlab/<name>`.
    """
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root).expanduser(), Path(root).expanduser() / name]
    home = data_home()
    if home is not None:
        dirs.append(home / name)
    dirs += [SYSTEM_DATA_DIR / name, cache_home() / name]
    return _unique(dirs)


def download_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where a download of `name` goes: `root`, else `$ROBUSTLAB_DATA/<name>`, else the cache."""
    if root is not None:
        return Path(root).expanduser()
    home = data_home()
    return (home if home is not None else cache_home()) / name


def shared_faces_dirs(name: str) -> list[Path]:
    """`<ancestor>/shared/data/faces/<name>` for each ancestor of the current directory and of
    this package (the repository sits next to the shared folder, e.g. /work/main and /work/shared)."""
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    dirs = []
    for start in starts:
        for anc in (start, *start.parents):
            dirs.append(anc / "shared" / "data" / "faces" / name)
    return _unique(dirs)


def network_available(url: str, timeout: float = 2.0) -> bool:
    """True when a TCP connection to `url`'s host can be opened within `timeout` seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "file":
        return True
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def describe(paths: Iterable[Path]) -> str:
    """Paths joined for an error message."""
    return ", ".join(str(p) for p in paths)
