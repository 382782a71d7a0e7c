"""One exception hierarchy for every user-facing failure.

A :class:`GtptError` is a *user* error: its message is one line saying what was expected, what was found and
what to do. The CLI prints it without a traceback and exits non-zero. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class GtptError(Exception):
    """Base class: a problem with the user's input, files or environment (not a bug)."""

    exit_code = 2


class UnknownModelError(GtptError):
    """A model name that is not in the registry."""


class CheckpointError(GtptError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the requested variant."""


class ArtifactExistsError(GtptError):
    """An output file exists and overwriting was not allowed (``path``: that file, when known)."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class OutputPathError(GtptError):
    """An output location that cannot be written."""


class ExportError(GtptError):
    """An export that failed its checks (nothing was kept)."""


class MissingDependencyError(GtptError):
    """A package this operation needs cannot be imported: an optional one (``extra`` names the gtpt-deploy extra that
    brings it) or, with ``extra=None``, a base dependency missing from a broken install."""

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        if extra is None:
            how = (f"it is a dependency of every gtpt-deploy install, so this environment is incomplete; install it "
                   f"with: pip install {package}")
        else:
            how = f"install it with: pip install 'gtpt-deploy[{extra}]'"
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed; {how}")
        self.package = package
        self.extra = extra


class InputImageError(GtptError):
    """An image that is missing or cannot be decoded."""


class AnnotationError(GtptError):
    """A COCO annotation or results file that is malformed."""


class ArtifactError(GtptError):
    """An artifact (ONNX file, engine) that is not what the caller expects."""


class RunnerInputError(GtptError):
    """A batch that does not fit the artifact (dtype, layout, shape or static batch)."""


class RunnerStateError(GtptError):
    """A runner used outside its ``with`` block (or activated twice)."""
