"""The idle-thread policy of the compute libraries, set by the functions that start them (never at import time).

OpenMP (torch's CPU kernels) spin-waits between parallel regions by default. On a machine whose cores are busy
(CI, shared servers) that made a GTPT-T forward take seconds instead of ~40 ms; passive waiting costs little on an
idle machine. OpenMP reads ``OMP_WAIT_POLICY`` once, when its runtime starts (the first parallel region after
torch is imported), so this must run before that: the CLI's entry callback and the library functions that load
torch (``export_onnx``, the torch runner) call it. An explicit ``OMP_WAIT_POLICY`` in the environment wins.
ONNX Runtime has its own switch (``session.intra_op.allow_spinning``), set per session by the ORT helpers.
"""

from __future__ import annotations

import os

DEFAULT_POLICY = "PASSIVE"


def apply_thread_policy(policy: str | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` (default PASSIVE) unless the environment already has one; return the policy in force.

    ``policy`` ("PASSIVE" or "ACTIVE") overrides the environment (``bench --spin``). Only effective before
    OpenMP starts in this process.
    """
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_POLICY)
    return os.environ["OMP_WAIT_POLICY"]


def ort_allows_spinning() -> bool:
    """Whether ONNX Runtime sessions may spin: the same policy as OpenMP's, so both libraries behave alike."""
    return os.environ.get("OMP_WAIT_POLICY", DEFAULT_POLICY).upper() == "ACTIVE"
