"""Files and folders named after the process that owns them (``...<pid>...``), removed by a later start once that
process is gone: the temporaries of :mod:`artifacts` and the scratch folders of :mod:`scratch` share this rule.
The bottom layer: imports nothing of the package."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (also when it belongs to another user: EPERM)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                      # EPERM: it exists, owned by someone else
        return True
    return True


def remove_dead_owners(folder: Path, pattern: re.Pattern[str], accept: Callable[[os.DirEntry], bool],
                       remove: Callable[[str], None]) -> list[Path]:
    """Remove each entry of ``folder`` whose name matches ``pattern`` (group 1: the owner's pid), that ``accept``
    takes, and whose owner is gone, with ``remove(path)`` -> the removed paths. Unreadable entries are skipped."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        try:
            if not (m and accept(entry)) or pid_alive(int(m.group(1))):
                continue
            remove(entry.path)
        except OSError:
            continue
        log.info("removed %s, left by an interrupted earlier run", entry.path)
        removed.append(Path(entry.path))
    return removed
