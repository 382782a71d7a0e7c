"""The users' speed table (benchmarks/README.md): GTPT-T/S/B at batch 1 and 8 with 1 and 2 threads, PyTorch eager,
torch.compile, ONNX Runtime FP32 and whatever FP16 / INT8 ONNX files and TensorRT engines exist, all timed by
``gtpt_deploy.eval.bench`` side by side (interleaved rounds, same person crops) and written as JSON + markdown.

Timing does not depend on the weights (every shape is static), so each variant is a seed-0 random-weight checkpoint
exported once with a dynamic batch (one ONNX file serves batch 1 and 8). FP16 / INT8 files and engines come from
their own stages: pass them as NAME=PATTERN with ``{variant}`` and ``{work}`` placeholders; a missing file leaves its
column empty ("-"), it is never estimated.

    python benchmarks/bench_table.py --work /tmp/gtpt_table --json table.json --markdown table.md
    python benchmarks/bench_table.py --variants gtpt_t_coco --threads 1 --rounds 10 --no-compile   # quick look
    python benchmarks/bench_table.py --onnx 'FP16={work}/{variant}_dyn_fp16.onnx' \\
        --onnx 'INT8 U8S8={work}/{variant}_dyn_int8_u8s8.onnx' --onnx 'INT8 S8S8={work}/{variant}_dyn_int8.onnx'
    python benchmarks/bench_table.py --onnx 'OV bf16={work}/{variant}_dyn.onnx@openvino:bf16' --no-eager
    python benchmarks/bench_table.py --from-json table.json --markdown table.md        # re-render only

A column's ``@PROVIDER`` suffix runs its file with that ``--provider`` (``openvino``, ``openvino:f32``,
``openvino:bf16``, ``cpu``); every artifact runs in its own worker process (``bench``'s isolation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

VARIANTS = ["gtpt_t_coco", "gtpt_s_coco", "gtpt_b_coco"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--variants", nargs="+", default=VARIANTS)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling per run)")
    p.add_argument("--no-eager", action="store_true", help="skip PyTorch eager (and torch.compile): ONNX columns only")
    p.add_argument("--spin", action="store_true", help="spinning idle threads (library defaults; idle machines)")
    p.add_argument("--onnx", action="append", default=[], metavar="NAME=PATTERN[@PROVIDER]",
                   help="extra ONNX column, run with --provider PROVIDER when given")
    p.add_argument("--engine", action="append", default=[], metavar="NAME=PATTERN",
                   help="TensorRT engine column (timed with --device cuda)")
    p.add_argument("--speedup", action="append", default=[], metavar="NAME",
                   help="add a 'NAME vs FP32' column: ORT FP32's median / NAME's (>1: NAME is faster)")
    p.add_argument("--work", type=Path, default=Path("/tmp/gtpt_bench_table"), help="checkpoints and exports")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--from-json", type=Path, default=None, help="only render an earlier --json to markdown")
    return p.parse_args()


def _columns(specs: list[str]) -> list[tuple[str, str, str | None]]:
    """NAME=PATTERN[@PROVIDER] -> (name, pattern, provider or None)."""
    out = []
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep:
            sys.exit(f"expected NAME=PATTERN[@PROVIDER], got {spec!r}")
        pattern, _, provider = pattern.partition("@")
        out.append((name, pattern, provider or None))
    return out


def prepare(variant: str, work: Path) -> tuple[Path, Path]:
    """Seed-0 checkpoint and its dynamic-batch FP32 ONNX (reused when already in ``work``)."""
    import torch

    from gtpt_deploy.export import export_onnx
    from gtpt_deploy.models import create_model, save_checkpoint

    ckpt, onnx_path = work / f"{variant}.pth", work / f"{variant}_dyn.onnx"
    if not ckpt.is_file():
        torch.manual_seed(0)
        save_checkpoint(create_model(variant), ckpt)
    if not onnx_path.is_file():
        export_onnx(ckpt, output=onnx_path, dynamic_batch=True)
    return ckpt, onnx_path


def measure(args: argparse.Namespace) -> dict:
    from gtpt_deploy.eval.bench import bench

    args.work.mkdir(parents=True, exist_ok=True)
    extra = [(n, p, None, prov) for n, p, prov in _columns(args.onnx)] + \
        [(n, p, "cuda", None) for n, p, _ in _columns(args.engine)]
    compile_ = not (args.no_compile or args.no_eager)
    runs = []
    for variant in args.variants:
        ckpt, fp32 = prepare(variant, args.work)
        columns = ([] if args.no_eager else [("eager", ckpt, None, None)]) + [("ORT FP32", fp32, None, None)]
        missing = []
        for name, pattern, device, provider in extra:
            path = Path(pattern.format(variant=variant, work=args.work))
            (columns if path.is_file() else missing).append((name, path, device, provider))
        for threads in args.threads:
            print(f"{variant}, {threads} thread(s): {', '.join(c[0] for c in columns)}", file=sys.stderr, flush=True)
            report = bench([c[1] for c in columns], batches=args.batches, threads=threads, rounds=args.rounds,
                           warmup=args.warmup, device=[c[2] for c in columns], provider=[c[3] for c in columns],
                           torch_compile=compile_, spin=True if args.spin else None,
                           progress=lambda line: print(line, file=sys.stderr))
            names = [columns[0][0]] + (["torch.compile"] if compile_ else []) + [c[0] for c in columns[1:]]
            per_batch = len(args.batches)
            rows = [dict(row.__dict__, column=names[i // per_batch]) for i, row in enumerate(report.rows)]
            runs.append({"variant": variant, "threads": threads, "rows": rows, "missing": [m[0] for m in missing],
                         "machine": report.machine.to_dict(), "load_average_end": report.load_average_end})
    return {"date": datetime.date.today().isoformat(), "spin": args.spin, "rounds": args.rounds,
            "speedups": args.speedup,
            "columns": ([] if args.no_eager else ["eager"]) + (["torch.compile"] if compile_ else []) + ["ORT FP32"]
                       + [c[0] for c in _columns(args.onnx)] + [c[0] for c in _columns(args.engine)],
            "runs": runs}


def markdown(data: dict) -> str:
    """ms per crop per column; ORT FP32's speed-up over eager and torch.compile; load average per run."""
    cols, speedups = data["columns"], data.get("speedups", [])
    m = data["runs"][0]["machine"] if data["runs"] else {}
    lines = [f"{data['date']}, {m.get('cpu', '?')} ({', '.join(m.get('flags', []))}; {m.get('logical_cpus')} logical "
             f"CPUs), {'spinning' if data['spin'] else 'passive'} idle threads, median of {data['rounds']} "
             f"interleaved rounds; ms per crop (lower is better), '-' = no such file / not measured.", "",
             "| variant | batch | threads | " + " | ".join(cols) + " | FP32 vs eager | FP32 vs compile | "
             + "".join(f"{s} vs FP32 | " for s in speedups) + "load avg |",
             "|---" * (len(cols) + 6 + len(speedups)) + "|"]
    for run in data["runs"]:
        by = {(r["column"], r["batch"]): r for r in run["rows"]}
        batches = sorted({r["batch"] for r in run["rows"]})
        load = f"{run['machine']['load_average'][0]:.1f} -> {run['load_average_end'][0]:.1f}"
        for b in batches:
            def ms(col: str) -> str:
                r = by.get((col, b))
                return f"{r['ms_per_crop']:.2f}" if r and r.get("ms_per_crop") else "-"

            def ratio(col: str) -> str:
                r, f = by.get((col, b)), by.get(("ORT FP32", b))
                ok = r and f and r.get("median_ms") and f.get("median_ms")
                return f"{r['median_ms'] / f['median_ms']:.2f}x" if ok else "-"

            def faster(col: str) -> str:
                r, f = by.get((col, b)), by.get(("ORT FP32", b))
                ok = r and f and r.get("median_ms") and f.get("median_ms")
                return f"{f['median_ms'] / r['median_ms']:.2f}x" if ok else "-"

            name = run["variant"].replace("gtpt_", "GTPT-").replace("_coco", "").upper()
            lines.append(f"| {name} | {b} | {run['threads']} | " + " | ".join(ms(c) for c in cols)
                         + f" | {ratio('eager')} | {ratio('torch.compile')} | "
                         + "".join(f"{faster(s)} | " for s in speedups) + f"{load} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE" if args.spin else os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        data = measure(args)
        if args.json:
            args.json.write_text(json.dumps(data, indent=2) + "\n")
    table = markdown(data)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
