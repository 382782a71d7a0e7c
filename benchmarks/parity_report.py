#!/usr/bin/env python3
"""Issue-2 numbers for all six variants: parity with the official outputs, fp16 drift, params and GMACs.

Usage: python benchmarks/parity_report.py [--shared ../shared]
Loads each rebuilt official-format checkpoint through the public loader (``create_model(checkpoint=...)``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=os.environ.get("GTPT_SHARED", "../shared"))
    args = ap.parse_args()
    os.environ["GTPT_SHARED"] = str(Path(args.shared).resolve())
    from gtpt_fixtures import FIXTURES, write_seed0_checkpoint
    from test_models import FIXTURE_OF, _patch_ids, _same_sets

    from gtpt_deploy.models import create_model
    from gtpt_deploy.models.gtpt import GTPT
    from gtpt_deploy.models.summary import count_macs, count_params

    torch.set_num_threads(2)
    print(f"{'variant':<18} {'max|d| official':>15} {'token sets':>10} {'vs student':>10} {'fp16 max|d|':>11} "
          f"{'params M':>8} {'GMACs':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fixture in FIXTURE_OF.items():
            io = torch.load(FIXTURES / f"{fixture}_seed0_io.pt", weights_only=True)
            model = create_model(checkpoint=write_seed0_checkpoint(Path(tmp) / f"{name}.pth", fixture))
            model.ema_features.transformer.selection_log = []
            with torch.no_grad():
                x, y = model(io["input"])
            ids = _patch_ids(model.ema_features.transformer.selection_log, model.cfg.wholebody)
            model.ema_features.transformer.selection_log = None
            same = all(_same_sets(a, b) for step in ids for a, b in zip(
                ids[step] if isinstance(ids[step], list) else [ids[step]],
                io["kept_patch_ids"][step] if isinstance(ids[step], list) else [io["kept_patch_ids"][step]]))
            diff = max((x - io["pred_x"]).abs().max().item(), (y - io["pred_y"]).abs().max().item())
            student = (x - io["student_pred_x"]).abs().max().item()
            half = GTPT(model.cfg).eval()
            half.load_state_dict(model.state_dict())
            with torch.no_grad():
                hx, hy = half.half()(io["input"].half())
            d16 = max((hx.float() - x).abs().max().item(), (hy.float() - y).abs().max().item())
            print(f"{name:<18} {diff:>15.2e} {'same' if same else 'DIFFER':>10} {student:>10.2f} {d16:>11.4f} "
                  f"{count_params(model) / 1e6:>8.3f} {count_macs(model) / 1e9:>6.3f}")


if __name__ == "__main__":
    main()
