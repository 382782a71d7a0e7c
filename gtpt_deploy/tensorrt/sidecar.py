"""The one reader of an engine's JSON sidecar (``foo.engine`` -> ``foo.engine.json``, written by
``engines/build.py`` from :class:`~gtpt_deploy.engines.report.EngineResult`): the runner, the Triton repository
writer and validate's lineage all read it here. No tensorrt import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import engine_sidecar_path
from ..errors import ArtifactError

#: keys every sidecar written by ``gtpt-deploy build`` has; a file without them was not
REQUIRED_KEYS = ("tensorrt_version", "gpu", "model", "profile", "engine_sha256")


def read_engine_sidecar(engine: Path) -> dict[str, Any]:
    """The JSON sidecar of ``engine`` as a dict; ArtifactError (one line) when missing or unreadable."""
    side = engine_sidecar_path(engine)
    if not side.is_file():
        raise ArtifactError(f"{engine.name} has no sidecar {side.name} beside it (it holds the model metadata and "
                            f"what the engine was built with); build engines with 'gtpt-deploy build MODEL.onnx' "
                            f"and keep the two files together")
    try:
        data = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{side} is not a readable JSON sidecar ({type(e).__name__}); rebuild the engine with "
                            f"'gtpt-deploy build'") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ArtifactError(f"{side} is not a gtpt-deploy engine sidecar (missing {', '.join(missing)}); rebuild "
                            f"the engine with 'gtpt-deploy build'")
    return data
