"""What a command reads, by identity: the one input-protection check every writer uses (``artifacts.check_outputs``
before the work, ``artifacts.ArtifactSet`` again at its commit)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

from .errors import OutputPathError


class Inputs:
    """The files a command reads, by identity: an output that resolves to one of them (same path, a symlink or a hard
    link to it, or - for an input folder such as ``--images`` - an existing file under that folder, of one of
    ``folder_suffixes`` when given) is never written, with or without ``--force``. The one input-protection check
    every writer uses (:func:`check_outputs` before the work, :class:`ArtifactSet` again at its commit)."""

    def __init__(self, paths: Iterable[str | os.PathLike[str] | None] = (),
                 folder_suffixes: Iterable[str] | None = None) -> None:
        self._files: set[tuple[int, int]] = set()       # (device, inode): catches hard links and symlinks
        self._folders: list[Path] = []
        self._suffixes = None if folder_suffixes is None else tuple(s.lower() for s in folder_suffixes)
        for p in paths:
            self.add(p)

    def add(self, path: str | os.PathLike[str] | None) -> "Inputs":
        """Protect one more input (None, a missing file or a symlink loop is skipped: its reader reports it)."""
        if path is None:
            return self
        try:
            st = os.stat(path)                           # follows symlinks
        except (OSError, ValueError):
            return self
        if stat.S_ISDIR(st.st_mode):
            self._folders.append(Path(path).resolve())
        else:
            self._files.add((st.st_dev, st.st_ino))
        return self

    def __bool__(self) -> bool:
        return bool(self._files or self._folders)

    def holds(self, target: str | os.PathLike[str]) -> bool:
        """Whether writing ``target`` would replace an input (a name that does not exist replaces nothing)."""
        try:
            st = os.stat(target)
        except (OSError, ValueError):
            return False
        if (st.st_dev, st.st_ino) in self._files:
            return True
        if self._folders and not stat.S_ISDIR(st.st_mode):
            real = Path(target).resolve()
            if self._suffixes is not None and real.suffix.lower() not in self._suffixes:
                return False
            return any(real.is_relative_to(folder) for folder in self._folders)
        return False

    def check(self, target: Path, option: str = "--output") -> None:
        """OutputPathError when ``target`` is one of the inputs (never overridable: no --force in the advice)."""
        if self.holds(target):
            raise OutputPathError(f"output {target} is one of the input files and would be overwritten; choose an "
                                  f"output that is not one of the command's inputs (another {option})")
