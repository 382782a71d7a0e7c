"""Folder names, the file-naming scheme, sha256, JSON sidecars and atomic writes.

This is the only module that knows where artifacts live and how they are named.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactExistsError, OutputPathError

MODELS_DIR = Path("models")
EXPORT_DIR = Path("export")
CALIB_DIR = Path("calib")
ENGINES_DIR = Path("engines")


def onnx_path(variant: str, batch: int | None, precision: str = "fp32", root: Path | None = None) -> Path:
    """Default ONNX location: ``export/<variant>_b<N>[_<precision>].onnx`` (``bdyn`` for a dynamic batch)."""
    stem = f"{variant}_b{batch if batch is not None else 'dyn'}"
    if precision != "fp32":
        stem += f"_{precision}"
    return (root or Path.cwd()) / EXPORT_DIR / f"{stem}.onnx"


def engine_path(variant: str, batch: int | None, precision: str, root: Path | None = None) -> Path:
    """Default engine location: ``engines/<variant>_b<N>_<precision>.engine``."""
    return (root or Path.cwd()) / ENGINES_DIR / f"{variant}_b{batch if batch is not None else 'dyn'}_{precision}.engine"


def sidecar_path(artifact: Path) -> Path:
    """The JSON report that sits next to an artifact: ``foo.onnx`` -> ``foo.json``."""
    return artifact.with_suffix(".json")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_writable(path: Path, force: bool, option: str = "--output") -> None:
    """Refuse an existing output without ``force`` and an output folder that cannot be created or written.

    ``option`` is the command's name for the output (``--output``, ``--out``) used in the messages.
    """
    if path.exists() and not force:
        raise ArtifactExistsError(f"output {path} already exists; pass --force to overwrite it or choose another "
                                  f"{option}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create output folder {path.parent}: {e.strerror}; choose a writable "
                              f"{option}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputPathError(f"output folder {path.parent} is not writable; choose a writable {option}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed, so a failed stage leaves nothing behind.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the artifact the permissions any other new file would get.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
