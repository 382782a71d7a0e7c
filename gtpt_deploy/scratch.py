"""Private working folders in the system temp folder that a SIGKILLed run cannot remove itself: named with the
owner's pid, so every start removes those whose owner is gone (as ``artifacts`` does for its temporaries)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .leftovers import remove_dead_owners

log = logging.getLogger(__name__)

# A scratch folder is ``gtpt_<kind>_<owner pid>_<random>`` in the system temp folder: a SIGKILLed run cannot remove
# its own, so every start removes those whose owner is gone (as artifacts does with its temporaries).
_SCRATCH_RE = re.compile(r"^gtpt_[a-z]+_(\d+)_[A-Za-z0-9_]+$")


def clean_stale_scratch(folder: Path | None = None) -> list[Path]:
    """Remove scratch folders (``gtpt_<kind>_<pid>_<random>``) of this user in ``folder`` (default: the system temp
    folder) whose owner process is gone -> removed."""
    folder = Path(folder if folder is not None else tempfile.gettempdir())

    def mine(entry: os.DirEntry) -> bool:   # the system temp folder is shared: only this user's folders
        return entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid()

    return remove_dead_owners(folder, _SCRATCH_RE, mine, lambda path: shutil.rmtree(path, ignore_errors=True))


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A private working folder ``<system temp>/gtpt_<kind>_<pid>_<random>`` (``kind``: lower-case letters),
    removed when the block ends; folders left by killed earlier runs are removed first."""
    if not kind.isalpha() or not kind.islower():
        raise ValueError(f"scratch folder kind must be lower-case letters, got {kind!r}")
    base = Path(tempfile.gettempdir())
    clean_stale_scratch(base)
    path = Path(tempfile.mkdtemp(prefix=f"gtpt_{kind}_{os.getpid()}_", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
