#!/usr/bin/env python3
"""Train a small GTPT sample checkpoint on COCO-format data with GT boxes (not part of the runtime package).

Purpose: a genuinely trained, *memorized* checkpoint whose outputs are peaked, so that AP gates and FP16/INT8
comparisons measure something. It is NOT a general pose model.

Recipe (the paper's training objective, simplified for memorization):
* the model's own code (``gtpt_deploy.create_model``) in train mode, pruning included;
* official pre-processing (GT box -> center/scale with x1.25 padding, affine crop to 256x192, RGB, ImageNet norm);
* every person twice per epoch: as is and horizontally flipped (left/right joints swapped), so the official flip
  test at evaluation averages two trained views;
* ``--jitter SHIFT,SCALE,ROT``: each epoch, each box is shifted by up to SHIFT of its size, scaled by up to
  1 +- SCALE and rotated by up to ROT degrees (a fraction of the views stays exact), so the model holds on person
  detector boxes, which are never exactly the GT boxes; without it the model memorizes exact GT crops only;
* SimCC targets: a Gaussian over the bins (sigma in bins, label smoothing) per axis; loss = KL(target || softmax),
  averaged over visible keypoints inside the crop;
* Adam, constant LR after a short warm-up; seeded; CPU or CUDA.
The trained weights themselves (not an EMA copy) are stored in the official key layout, float16.

Example:
  python tools/train_sample.py --model gtpt_t_coco --out models/gtpt_t_coco_sample.pth \\
      --data ../shared/data/coco_train2017_mini/person_keypoints_train2017_subset.json:../shared/data/coco_train2017_mini/images \\
      --data ../shared/data/coco_val2017_pose/person_keypoints_val2017_subset.json:../shared/data/coco_val2017_pose/images \\
      --epochs 150
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from gtpt_deploy.runtime.codec import decode_to_image
from gtpt_deploy.coco import to_coco_results
from gtpt_deploy.eval.metrics import evaluate
from gtpt_deploy.keypoints import WHOLEBODY_PARTS, dataset_for
from gtpt_deploy.models import create_model, save_checkpoint
from gtpt_deploy.runtime.transforms import affine_matrix, box_to_center_scale, crop, normalize, sanitize_gt_box

log = logging.getLogger("train_sample")


def load_persons(ann_file: Path, image_dir: Path, num_keypoints: int) -> list[dict]:
    """Non-crowd persons with at least one labelled keypoint: image path, sanitized box, keypoints (K,3)."""
    data = json.loads(ann_file.read_text())
    images = {im["id"]: im for im in data["images"]}
    persons = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("category_id", 1) != 1:
            continue
        if num_keypoints == 133:
            kpts = np.concatenate([np.asarray(ann.get(field, [0] * 3 * (b - a)), dtype=np.float32).reshape(-1, 3)
                                   for a, b, field in WHOLEBODY_PARTS.values()])
        else:
            kpts = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
        if (kpts[:, 2] > 0).sum() == 0:
            continue
        im = images[ann["image_id"]]
        box = sanitize_gt_box(ann["bbox"], im["width"], im["height"])
        if box is None:
            continue
        persons.append({"image": image_dir / im["file_name"], "box": box, "kpts": kpts, "image_id": im["id"]})
    return persons


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xywh boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, float(iw)) * max(0.0, float(ih))
    return inter / max(1e-9, float(a[2] * a[3] + b[2] * b[3]) - inter)


def detector_views(persons: list[dict], detector_onnx: Path, min_iou: float = 0.5) -> list[dict]:
    """The person detector's boxes of the training images as extra views of the persons they find.

    Each GT person gets at most one detection (greedy by IoU >= ``min_iou``); the view keeps the person's keypoints
    and takes the detector's box, so the model learns the crops the run/demo pipeline makes, not only GT crops.
    """
    from gtpt_deploy.runtime.detect import PersonDetector

    detector = PersonDetector(detector_onnx, score_thr=0.3, threads=1)
    by_image: dict[Path, list[dict]] = {}
    for p in persons:
        by_image.setdefault(p["image"], []).append(p)
    views = []
    for path, group in by_image.items():
        dets = detector.detect(cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION))
        pairs = sorted(((_iou(p["box"], d), i, j) for i, p in enumerate(group) for j, d in enumerate(dets.xywh)),
                       reverse=True)
        used_p, used_d = set(), set()
        for iou, i, j in pairs:
            if iou < min_iou or i in used_p or j in used_d:
                continue
            used_p.add(i)
            used_d.add(j)
            views.append({**group[i], "box": np.asarray(dets.xywh[j], np.float32)})
    return views


def _read_rgb(path: Path, cache: dict[Path, np.ndarray]) -> np.ndarray:
    if path not in cache:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            raise SystemExit(f"error: cannot read image {path}")
        cache[path] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cache[path]


def _affine(center: np.ndarray, scale: np.ndarray, input_size, angle: float = 0.0) -> np.ndarray:
    """Image -> crop 2x3 affine: the official box affine, then a rotation by ``angle`` degrees about the crop center."""
    h, w = input_size
    m = affine_matrix(center, scale, input_size)
    if angle == 0.0:
        return m
    r = cv2.getRotationMatrix2D((w * 0.5, h * 0.5), angle, 1.0)
    return np.concatenate([r[:, :2] @ m[:, :2], r[:, :2] @ m[:, 2:] + r[:, 2:]], axis=1).astype(np.float32)


def build_samples(persons: list[dict], flip_index: np.ndarray, input_size=(256, 192), jitter=None,
                  rng: np.random.Generator | None = None, cache: dict | None = None, exact_share: float = 0.25):
    """Crops (N,3,H,W) float32 normalized, joints in crop pixels (N,K,2) and weights (N,K); flipped copies appended.

    ``jitter`` = (shift, scale, rot): random box shift (fraction of box w/h), scale factor range and rotation in
    degrees, drawn from ``rng``; a share ``exact_share`` of the views stays exact so GT-box accuracy is kept.
    """
    h, w = input_size
    crops, joints, weights = [], [], []
    cache = {} if cache is None else cache
    for p in persons:
        box = np.asarray(p["box"], np.float32).copy()
        angle = 0.0
        if jitter is not None and rng.random() >= exact_share:
            shift, scale, rot = jitter
            box[:2] += rng.uniform(-shift, shift, 2) * box[2:]
            grow = rng.uniform(1.0 - scale, 1.0 + scale)
            box[:2] -= (grow - 1.0) * 0.5 * box[2:]
            box[2:] *= grow
            angle = float(rng.uniform(-rot, rot)) if rng.random() < 0.5 else 0.0
        center, scale_ = box_to_center_scale(box, input_size)
        m = _affine(center, scale_, input_size, angle)
        xy = p["kpts"][:, :2] @ m[:, :2].T + m[:, 2]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        vis = ((p["kpts"][:, 2] > 0) & inside).astype(np.float32)
        c = cv2.warpAffine(_read_rgb(p["image"], cache), m, (w, h), flags=cv2.INTER_LINEAR)
        crops += [c, c[:, ::-1]]
        # A horizontally flipped crop moves pixel x to (W-1) - x and swaps left/right joints; the official flip
        # test (flip back + one-bin shift) undoes exactly this.
        fxy = xy[flip_index].copy()
        fxy[:, 0] = (w - 1) - fxy[:, 0]
        joints += [xy, fxy]
        weights += [vis, vis[flip_index]]
    x = torch.from_numpy(normalize(np.stack(crops)))
    return x, torch.from_numpy(np.stack(joints)).float(), torch.from_numpy(np.stack(weights))


def simcc_targets(joints: torch.Tensor, bins: int, split: float, sigma: float, axis: int) -> torch.Tensor:
    """(N,K,2) crop-pixel joints -> (N,K,bins) normalized Gaussian label distributions along one axis."""
    mu = joints[..., axis:axis + 1] * split                                       # (N,K,1)
    grid = torch.arange(bins, dtype=torch.float32)
    t = torch.exp(-((grid - mu) ** 2) / (2 * sigma ** 2))
    return t / t.sum(-1, keepdim=True).clamp_min(1e-12)


def kl_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) per keypoint, averaged over weighted keypoints."""
    kl = (target * (target.clamp_min(1e-12).log() - logits.log_softmax(-1))).sum(-1)  # (B,K)
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


def _rel(spec: str) -> str:
    """ANN:IMAGES with both paths relative to the current folder (no machine-specific absolute paths in metadata)."""
    return ":".join(os.path.relpath(p) for p in spec.split(":", 1))


class APProbe:
    """COCO AP of the model on one annotated set with GT boxes and the official flip test (package codec/evaluator)."""

    def __init__(self, spec: str, num_keypoints: int, input_size=(256, 192)) -> None:
        ann, img_dir = spec.split(":", 1)
        self.ann = Path(ann)
        persons = load_persons(self.ann, Path(img_dir), num_keypoints)
        boxes = np.stack([p["box"] for p in persons])
        self.centers, self.scales = box_to_center_scale(boxes, input_size)
        cache: dict[Path, np.ndarray] = {}
        self.x = torch.from_numpy(normalize(np.stack([crop(_read_rgb(p["image"], cache), c, s, input_size)
                                                      for p, c, s in zip(persons, self.centers, self.scales)])))
        self.image_ids = np.array([p["image_id"] for p in persons])
        self.dataset = dataset_for(num_keypoints)

    @torch.no_grad()
    def __call__(self, model, device, batch: int = 64) -> float:
        model.eval()
        outs = []
        for view in (self.x, self.x.flip(3)):
            parts = [model(view[i:i + batch].to(device)) for i in range(0, len(view), batch)]
            outs.append(tuple(torch.cat([p[j] for p in parts]).float().cpu().numpy() for j in range(2)))
        model.train()
        kpts = decode_to_image(*outs[0], self.centers, self.scales, self.dataset.flip_index(), outs[1])
        res = to_coco_results(self.image_ids, kpts, np.ones(len(kpts)), self.centers, self.scales,
                              dataset=self.dataset)
        return float(evaluate(self.ann, res).AP)


@torch.no_grad()
def pixel_error(model, x, joints, weights, split: float, device, batch: int = 64) -> float:
    """Mean distance in crop pixels between argmax predictions (no flip) and targets, over visible joints."""
    model.eval()
    errs, n = 0.0, 0.0
    for i in range(0, len(x), batch):
        px, py = model(x[i:i + batch].to(device))
        pred = torch.stack((px.argmax(-1), py.argmax(-1)), -1).float().cpu() / split
        d = (pred - joints[i:i + batch]).norm(dim=-1)
        errs += float((d * weights[i:i + batch]).sum())
        n += float(weights[i:i + batch].sum())
    model.train()
    return errs / max(n, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gtpt_t_coco")
    ap.add_argument("--data", action="append", required=True, help="ANN.json:IMAGE_DIR (repeatable)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=4.0, help="Gaussian sigma of the SimCC targets, in bins")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--save-every", type=int, default=10, help="also write <out>.epochN.pth every N epochs")
    ap.add_argument("--stop-epoch", type=int, default=0,
                    help="stop after this epoch while the LR schedule still spans --epochs (0: run all)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time (0: no limit)")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (AMX on recent Xeons, ~1.6x faster)")
    ap.add_argument("--eval", help="ANN.json:IMAGE_DIR scored with AP (GT boxes, flip test) at every save; "
                                   "the best-AP weights become --out")
    ap.add_argument("--target-ap", type=float, default=0.0, help="stop once --eval's AP reaches this")
    ap.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tune) instead of random")
    ap.add_argument("--cosine", type=float, default=0.0, metavar="END",
                    help="cosine LR decay over --epochs down to END x --lr (0: constant LR after the warm-up); "
                         "a lower LR at the end settles a fine-tune whose jittered views keep the loss noisy")
    ap.add_argument("--exact-share", type=float, default=0.25,
                    help="with --jitter: share of the views per epoch that keep their box exactly")
    ap.add_argument("--detector", type=Path, help="person detector ONNX: also train on its boxes of the training "
                                                  "images (matched to GT persons, IoU >= 0.5)")
    ap.add_argument("--jitter", default="", help="SHIFT,SCALE,ROT box jitter per epoch, e.g. 0.08,0.15,20 "
                                                 "(fractions of the box, degrees); default: exact GT boxes")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = create_model(args.model, checkpoint=args.init).float().to(device).train()
    cfg = model.cfg
    ds = dataset_for(cfg.num_keypoints)
    persons = []
    for spec in args.data:
        ann, img_dir = spec.split(":", 1)
        persons += load_persons(Path(ann), Path(img_dir), cfg.num_keypoints)
    num_gt = len(persons)
    if args.detector:
        persons += detector_views(persons, args.detector)
    jitter = tuple(float(v) for v in args.jitter.split(",")) if args.jitter else None
    aug_rng = np.random.default_rng(args.seed)
    image_cache: dict[Path, np.ndarray] = {}
    x, joints, weights = build_samples(persons, ds.flip_index(), cfg.image_size, cache=image_cache)
    bins_x, bins_y = cfg.simcc_bins
    tx = simcc_targets(joints, bins_x, cfg.split_ratio, args.sigma, 0)
    ty = simcc_targets(joints, bins_y, cfg.split_ratio, args.sigma, 1)
    exact = (x, joints, weights)
    log.info("%s: %d persons -> %d samples (with flips), %d visible joints", cfg.name, len(persons), len(x),
             int(weights.sum()))

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(x) / args.batch)
    warmup = min(200, steps_per_epoch * 5)
    total_steps = steps_per_epoch * args.epochs

    def lr_factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup)
        if not args.cosine:
            return ramp
        decay = 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        return ramp * (args.cosine + (1 - args.cosine) * decay)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(args.seed)
    probe = APProbe(args.eval, cfg.num_keypoints, cfg.image_size) if args.eval else None
    best_ap = -1.0
    start = time.time()
    meta = {"what": "MEMORIZED sample checkpoint for pipeline tests, NOT a general pose model",
            "trained_on": ", ".join(_rel(d) for d in args.data), "persons": len(persons), "seed": args.seed,
            "recipe": f"SimCC KL, sigma {args.sigma} bins, Adam lr {args.lr}"
                      f"{f' (cosine to x{args.cosine} over {args.epochs} epochs)' if args.cosine else ''}"
                      f", batch {args.batch}, flip views"
                      f"{', bf16 autocast' if args.amp else ''}"
                      + (f", box jitter shift/scale/rot {args.jitter} ({args.exact_share:.0%} exact)" if jitter
                         else ", exact GT boxes"),
            "tool": "tools/train_sample.py"}
    if args.detector:
        meta["detector_views"] = (f"{len(persons) - num_gt} boxes of {_rel(str(args.detector))} "
                                  "(IoU >= 0.5 to a GT person)")
    if args.init:
        meta["initialized_from"] = args.init.name   # a file name: no machine-specific path in the checkpoint
    for epoch in range(1, args.epochs + 1):
        if jitter is not None:  # fresh boxes every epoch; targets follow the jittered joints
            x, joints, weights = build_samples(persons, ds.flip_index(), cfg.image_size, jitter, aug_rng, image_cache,
                                               args.exact_share)
            tx = simcc_targets(joints, bins_x, cfg.split_ratio, args.sigma, 0)
            ty = simcc_targets(joints, bins_y, cfg.split_ratio, args.sigma, 1)
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), args.batch):
            idx = perm[i:i + args.batch]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                px, py = model(x[idx].to(device))
            w = weights[idx].to(device)
            loss = kl_loss(px.float(), tx[idx].to(device), w) + kl_loss(py.float(), ty[idx].to(device), w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        minutes = (time.time() - start) / 60
        msg = f"epoch {epoch} loss {total / len(x):.4f} {minutes:.1f} min"
        last = epoch in (args.epochs, args.stop_epoch) or (args.max_minutes and minutes >= args.max_minutes)
        if epoch % args.save_every == 0 or last:
            err = pixel_error(model, *exact, cfg.split_ratio, device)
            msg += f" train-crop error {err:.2f} px"
            meta.update(epochs=epoch, train_minutes=round(minutes, 1), train_crop_error_px=round(err, 3))
            if probe is not None:
                ap_now = probe(model, device)
                msg += f" AP {ap_now:.4f}"
                meta.update(eval_set=_rel(args.eval), eval_AP=round(ap_now, 4))
                if ap_now > best_ap:
                    best_ap = ap_now
                    save_checkpoint(model, args.out, meta, half=True)
                    msg += " (best, saved)"
                last = last or (args.target_ap > 0 and ap_now >= args.target_ap)
            save_checkpoint(model, args.out.with_suffix(f".epoch{epoch}.pth"), meta, half=True)
        log.info(msg)
        if last:
            break
    if probe is None:
        save_checkpoint(model, args.out, meta, half=True)
    log.info("wrote %s (best AP %.4f)", args.out, best_ap)


if __name__ == "__main__":
    main()
