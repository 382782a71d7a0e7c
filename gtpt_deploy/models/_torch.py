"""The one gate for torch: every module of this package that needs torch imports this first, so a runtime-only
install (no ``[export]`` extra) gets one line naming the extra instead of a bare ImportError. The registry
(:mod:`.variants`) does not import it: ``gtpt-deploy models`` and artifact metadata need no torch."""

from __future__ import annotations

from ..errors import MissingDependencyError

try:
    import torch  # noqa: F401
except ImportError as e:  # a runtime-only install (no [export] extra)
    raise MissingDependencyError("torch", "export", "Working with PyTorch checkpoints (export, .pth runners)") from e
