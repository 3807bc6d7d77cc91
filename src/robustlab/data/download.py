"""Downloading a file (verified before it is kept) and extracting a tar archive safely."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from robustlab.core.errors import DataError

#: Seconds a download may wait on the network for any one step (connect, each read).
DOWNLOAD_TIMEOUT = 15.0


def download_file(
    url: str, dest: Path, verify: Callable[[Path], None], timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Fetch `url` into `dest`, keeping it only if `verify(tmp_path)` returns without raising.

    Writes `dest.part` first, so a broken download never leaves a file that looks complete.
    Network failures raise `DataError` naming the URL.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as fh:
            shutil.copyfileobj(response, fh, length=1 << 20)
        verify(part)
        os.replace(part, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        if isinstance(exc, DataError):
            raise
        reason = getattr(exc, "reason", exc)
        raise DataError(f"download of {url} failed: {reason}") from None
    return dest


def safe_extract_tar(archive: Path, dest: Path, prefix: str | None = None) -> None:
    """Extract the regular files and folders of a tar archive into `dest`.

    Refuses (`DataError`) absolute names, `..` components, links and special files, so
    nothing can land outside `dest`. `prefix`, when given, keeps only members under it.
    """
    dest = Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for m in tar.getmembers():
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive}: refusing unsafe archive member {m.name!r}")
                if prefix is None or p.parts[:1] == (prefix,):
                    members.append(m)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second safety net
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: corrupt tar archive ({exc})") from None
