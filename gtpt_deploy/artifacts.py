"""Folder names, the file-naming scheme, sha256, JSON sidecars and atomic writes.

This is the only module that knows where artifacts live and how they are named.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ArtifactExistsError, OutputPathError
from .inputs import Inputs
from .leftovers import remove_dead_owners

log = logging.getLogger(__name__)

MODELS_DIR = Path("models")
EXPORT_DIR = Path("export")
CALIB_DIR = Path("calib")
ENGINES_DIR = Path("engines")


RUNS_DIR = Path("runs")
MANIFEST = ".gtpt-run.json"           # in a run folder: the files that run wrote (so --force removes only those)
# Checkpoint names that say nothing about the weights: the exported file also carries the folder's name.
_GENERIC_STEMS = {"model_best", "checkpoint", "best", "last", "latest", "final", "model", "final_state", "ema"}


def checkpoint_stem(checkpoint: str | os.PathLike[str]) -> str:
    """The name an export of ``checkpoint`` is called by: its file stem (``gtpt_t_coco_sample.pth`` ->
    ``gtpt_t_coco_sample``), prefixed by its folder for generic names (``work/run3/model_best.pth`` ->
    ``run3_model_best``), so two checkpoints of the same variant get different default file names."""
    path = Path(checkpoint)
    stem = path.stem
    parent = path.resolve().parent.name
    if stem.lower() in _GENERIC_STEMS and parent:
        stem = f"{parent}_{stem}"
    return stem


def onnx_path(name: str, batch: int | None, precision: str = "fp32", root: Path | None = None) -> Path:
    """Default ONNX location: ``export/<name>_b<N>[_<precision>].onnx`` (``bdyn`` for a dynamic batch).

    ``name`` is :func:`checkpoint_stem` of the source checkpoint (the variant is in the file's metadata)."""
    stem = f"{name}_b{batch if batch is not None else 'dyn'}"
    if precision != "fp32":
        stem += f"_{precision}"
    return (root or Path.cwd()) / EXPORT_DIR / f"{stem}.onnx"


def precision_path(fp32_onnx: Path, precision: str) -> Path:
    """A reduced-precision ONNX beside its FP32 source: ``foo.onnx`` -> ``foo_fp16.onnx`` / ``foo_int8.onnx``."""
    return fp32_onnx.with_name(f"{fp32_onnx.stem}_{precision}.onnx")


#: INT8 default name tag per calibrate --target: the two forms differ (symmetric int8 vs uint8 activations), so they
#: must not replace each other's file. tensorrt keeps the historical ``_int8``.
INT8_TAGS = {"tensorrt": "int8", "cpu": "int8cpu"}


def int8_path(fp32_onnx: Path, target: str) -> Path:
    """Default INT8 file of a calibrate --target beside its FP32 source: ``foo_int8.onnx`` (tensorrt),
    ``foo_int8cpu.onnx`` (cpu)."""
    return precision_path(fp32_onnx, INT8_TAGS[target])


def calib_paths(int8_onnx: Path, method: str, root: Path | None = None) -> tuple[Path, Path]:
    """Calibration artifacts of an INT8 ONNX, named after that OUTPUT file (two calibrations of one source into two
    outputs never share them): ``calib/<stem>_<method>.ranges.json`` (activation ranges + manifest) and
    ``calib/<stem>_<method>.cache`` (TensorRT legacy calibration cache), ``calib/`` under ``root`` (default: the
    folder above the ONNX's folder when that is ``export/``, else the ONNX's own folder)."""
    if root is None:
        root = int8_onnx.parent.parent if int8_onnx.parent.name == EXPORT_DIR.name else int8_onnx.parent
    stem = f"{int8_onnx.stem}_{method}"
    return root / CALIB_DIR / f"{stem}.ranges.json", root / CALIB_DIR / f"{stem}.cache"


def engine_path(variant: str, batch: int | None, precision: str, root: Path | None = None) -> Path:
    """Default engine location: ``engines/<variant>_b<N>_<precision>.engine``."""
    return (root or Path.cwd()) / ENGINES_DIR / f"{variant}_b{batch if batch is not None else 'dyn'}_{precision}.engine"


def next_run_dir(name: str = "run", root: Path | None = None) -> Path:
    """The first free ``runs/<name>``, ``runs/<name>2``, ``runs/<name>3``, ... (as Ultralytics numbers its runs),
    so a run without ``--out`` never mixes its files with an earlier one's."""
    base = (root or Path.cwd()) / RUNS_DIR
    i = 1
    while (candidate := base / (name if i == 1 else f"{name}{i}")).exists():
        i += 1
    return candidate


def read_manifest(folder: Path) -> list[str]:
    """Names of the files an earlier run wrote into ``folder`` (empty when it kept no manifest)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    files = data.get("files") if isinstance(data, dict) else None
    # Names only, never paths: a manifest can at most point at files directly inside its folder.
    return [f for f in files or [] if isinstance(f, str) and f == Path(f).name and f not in ("", ".", "..")]


def remove_previous_run(folder: Path, keep: set[str] = frozenset()) -> list[str]:
    """Delete the files listed in ``folder``'s manifest (except ``keep``), then the manifest itself.

    Only what gtpt-deploy wrote there is touched: other files in the folder stay. Returns the removed names."""
    removed = []
    for name in read_manifest(folder):
        if name in keep:
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (folder / name).unlink()
            removed.append(name)
    (folder / MANIFEST).unlink(missing_ok=True)
    return removed


def write_manifest(folder: Path, files: list[str], info: dict[str, Any] | None = None) -> None:
    """Record the files a run wrote into ``folder`` (names relative to it)."""
    write_json(folder / MANIFEST, {**(info or {}), "files": sorted(set(files))})


def sidecar_path(artifact: Path) -> Path:
    """The JSON report that sits next to an artifact: ``foo.onnx`` -> ``foo.json``."""
    return artifact.with_suffix(".json")


def engine_sidecar_path(engine: Path) -> Path:
    """The JSON sidecar of a TensorRT engine: ``foo.engine`` -> ``foo.engine.json``.

    Not ``foo.json``: an engine usually sits beside the ONNX it was built from (``-o export/foo.engine``), whose
    export report already owns ``foo.json``; the full engine name keeps the two apart.
    """
    return engine.with_name(engine.name + ".json")


def timing_cache_path(engine: Path) -> Path:
    """Default TensorRT timing cache: ``timing.cache`` in the engine's folder, shared by every build there."""
    return engine.parent / "timing.cache"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_outputs(targets: Iterable[Path], force: bool, inputs: "Iterable[str | os.PathLike[str] | None] | Inputs" = (),
                  option: str = "--output") -> None:
    """Check every output before any work starts: an output that *is* one of ``inputs`` is refused, with or without
    ``force`` (an input file is never overwritten, see :class:`Inputs`); then :func:`check_writable` for each."""
    protected = inputs if isinstance(inputs, Inputs) else Inputs(inputs)
    for target in targets:
        protected.check(Path(target), option)
        check_writable(Path(target), force, option)


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if os.path.lexists(parent):
            return parent
    return Path("/")


def check_writable(path: Path, force: bool, option: str = "--output") -> None:
    """Refuse an existing output without ``force`` and an output folder that cannot be created or written.

    ``option`` is the command's name for the output (``--output``, ``--out``) used in the messages. A missing
    folder is not created here (a command that then fails must not leave an empty folder behind): the writer
    (:class:`ArtifactSet`) creates it. Also removes stale temporaries of crashed earlier runs from the folder
    (:func:`clean_stale_temps`).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"output {path} is a folder; pass a file name as {option}")
    if path.exists() and not force:
        raise ArtifactExistsError(f"output {path} already exists; pass --force to overwrite it or choose another "
                                  f"{option}", path=path)
    folder = path.parent if path.parent.is_dir() else _existing_ancestor(path)
    if not folder.is_dir():
        raise OutputPathError(f"cannot create output folder {path.parent}: {folder} is not a folder; choose a "
                              f"writable {option}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {folder} is not writable; choose a writable {option}")
    if folder == path.parent:
        clean_stale_temps(path.parent)


def make_folders(folder: Path, option: str = "--output") -> list[Path]:
    """Create ``folder`` and its missing parents -> the folders created (outermost first), for
    :func:`remove_folders` when the command fails. OutputPathError when it cannot be created."""
    missing = [p for p in [folder.absolute(), *folder.absolute().parents] if not os.path.lexists(p)][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create output folder {folder}: {e.strerror}; choose a writable "
                              f"{option}") from None
    return missing


def remove_folders(created: list[Path]) -> None:
    """Remove the folders :func:`make_folders` created, innermost first, as long as they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break


# ------------------------------------------------------------------------------------- temporaries and commits
# A temporary is ``.<final name>.<owner pid>.<random>.tmp`` in the destination folder: the rename onto the final
# name is then atomic (same file system), and a temporary left by a killed process is recognisable and can be
# removed by the next start once its owner is gone.
# A writer that needs the final suffix (OpenCV picks the video container by it) appends it: ``....tmp.mp4``.
_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+)?$")


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove temporaries (``.<name>.<pid>.<random>.tmp``) in ``folder`` whose owner process is gone -> removed."""
    return remove_dead_owners(folder, _TEMP_RE, lambda e: e.is_file(follow_symlinks=False), os.unlink)


def _write_error(path: Path, e: OSError) -> OutputPathError:
    return OutputPathError(f"cannot write {path}: {e.strerror or e}; free some space or choose another output "
                           f"location (nothing was kept)")


def _write(tmp: Path, data: bytes) -> None:
    """The one place artifact bytes reach the disk (a seam: tests replace it to simulate a full disk)."""
    with open(tmp, "wb") as f:
        f.write(data)


class ArtifactSet:
    """Output files that appear together or not at all (a model and its report; annotated images and results.json;
    ranges, cache and the INT8 model).

    Each file is written to a temporary in its destination folder (created when missing, and removed again when
    the set is discarded); :meth:`commit` then moves them onto their names in the order they were added (add the
    file that marks the set complete - the model, results.json - last). Without ``force`` the move is a hard link,
    which fails atomically when the name exists (two concurrent writers cannot both succeed; the loser's files are
    removed). ``inputs`` (:class:`Inputs`) are checked again at the commit: a name that meanwhile became one of the
    command's inputs is refused even with ``force``. As a context manager it commits on success and removes its
    temporaries on any exception (Ctrl-C included).
    """

    def __init__(self, force: bool = False, inputs: "Inputs | Iterable[str | os.PathLike[str] | None]" = ()) -> None:
        self.force = force
        self.inputs = inputs if isinstance(inputs, Inputs) else Inputs(inputs)
        self._files: list[tuple[Path, Path]] = []          # (temporary, final path)
        self._cleaned: set[Path] = set()
        self._created: list[Path] = []                     # folders this set made (removed again on discard)

    def __enter__(self) -> "ArtifactSet":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def __len__(self) -> int:
        return len(self._files)

    def temp(self, path: Path) -> Path:
        """A new temporary for ``path`` (its folder is created if missing); OutputPathError when it cannot be."""
        path = Path(path)
        if path.parent not in self._cleaned:
            if not path.parent.is_dir():
                self._created += make_folders(path.parent)
            clean_stale_temps(path.parent)
            self._cleaned.add(path.parent)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise OutputPathError(f"cannot create a file in {path.parent}: {e.strerror}; choose a writable "
                                  f"output location") from None
        os.close(fd)
        tmp = Path(name)
        self._files.append((tmp, path))
        # mkstemp creates 0600; give the artifact the permissions any other new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        return tmp

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write ``data`` for ``path`` (to its temporary); OutputPathError on a full disk or any write error."""
        tmp = self.temp(path)
        try:
            _write(tmp, data)
        except OSError as e:
            raise _write_error(path, e) from None

    def write_json(self, path: Path, data: Any) -> None:
        """JSON for ``path`` (indented). NaN / Infinity are refused: they are not JSON and no reader accepts them."""
        self.write_bytes(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())

    def commit(self) -> None:
        """Move every temporary onto its final name, in order; ArtifactExistsError (nothing kept) on a lost race,
        OutputPathError (nothing kept) when a name is one of the inputs."""
        for _, path in self._files:                 # before the first move: all or nothing
            try:
                self.inputs.check(path)
            except OutputPathError:
                self.discard()
                raise
        done: list[Path] = []
        first = self._files[0][1] if self._files else Path(".")
        try:
            for tmp, path in self._files:
                if self.force:
                    os.replace(tmp, path)
                else:
                    _link_new(tmp, path)
                done.append(path)
        except BaseException as e:
            if not self.force:               # the names this set created are ours to take back
                for path in done:
                    path.unlink(missing_ok=True)
            self.discard()
            if isinstance(e, FileExistsError):
                raise ArtifactExistsError(f"output {e.filename} was created by someone else while this ran; nothing "
                                          f"was kept - pass --force to overwrite it or choose another output",
                                          path=e.filename) from None
            if isinstance(e, OSError):
                raise _write_error(Path(e.filename or first), e) from None
            raise
        self._created = []                   # committed: the folders hold the artifacts now
        self.discard()

    def discard(self) -> None:
        """Remove the temporaries and the folders this set created, if empty (committed files are not touched)."""
        for tmp, _ in self._files:
            tmp.unlink(missing_ok=True)
        self._files = []
        remove_folders(self._created)
        self._created = []


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s content the name ``path`` only if ``path`` does not exist (atomically); FileExistsError if it
    does."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:                          # no hard links on this file system: claim the name, then replace it
        pass
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = True,
                inputs: "Inputs | Iterable[str | os.PathLike[str] | None]" = ()) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; move it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed, so a failed stage leaves nothing behind. Without ``force`` an
    existing ``path`` (even one created while the block ran) is never replaced. An OSError of the block while
    writing (full disk, read-only file system) becomes a one-line OutputPathError.
    """
    with ArtifactSet(force=force, inputs=inputs) as files:
        tmp = files.temp(path)
        try:
            yield tmp
        except OSError as e:
            raise _write_error(path, e) from None


def write_json(path: Path, data: Any, force: bool = True) -> None:
    """Write JSON atomically (indented, keys in insertion order, no NaN / Infinity)."""
    with ArtifactSet(force=force) as files:
        files.write_json(path, data)
