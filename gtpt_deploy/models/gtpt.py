"""The GTPT model: a :class:`~.variants.GTPTConfig` (the torch-free registry in :mod:`.variants`) -> ``nn.Module``.

Only the inference (EMA) branch exists here; its children are named like the official ``ema_*`` modules so that
official checkpoints map onto it key for key. Every pruning step keeps a k that is computed once, at
construction, from the config (``GTPTConfig.k_table``), so the exported graph has static shapes.
"""

from __future__ import annotations

from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .variants import DENSE_PER_GROUP, GTPTConfig
from .layers import (Attention, Block, GroupAttention, LiteStem, UStem, gather_rows, sine_table, softmax_pool,
                     merge_dims, split_dim, topk_indices)

# Ranges of ``fine_keypoint_token`` fed by each of the 5 part tokens: (part index, start, stop).
_FINE_SLICES = (((0, 0, 68),), ((1, 68, 89), (2, 89, 110)), ((3, 110, 113), (4, 113, 116)))
# Whole-body transition: query rows of the 22 leading tokens that score each group (parts first, then body kps).
_WB_SCORE_ROWS = (((0, 1), (5, 10)), ((1, 3), (10, 16)), ((3, 5), (16, 22)))
GROUPS, SLOTS = 3, 6
PRUNE_PLAIN_LAYER, PRUNE_GROUP_LAYER = 3, 3


class Transformer(nn.Module):
    """6 plain layers (pruning at layer 3), the split into 3 keypoint groups, 6 group layers (pruning at layer 3)."""

    def __init__(self, cfg: GTPTConfig) -> None:
        super().__init__()
        d, hidden = cfg.dim, cfg.dim * cfg.mlp_ratio
        self.cfg = cfg
        self.k = cfg.k_table
        self.layers = nn.ModuleList(Block(d, hidden, Attention(d, cfg.heads)) for _ in range(cfg.plain_layers))
        self.group_layers = nn.ModuleList(Block(d, hidden, GroupAttention(d, cfg.heads))
                                          for _ in range(cfg.group_layers))
        self.group_mask = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, GROUPS * d),
                                        nn.Sigmoid())
        # Debugging / tests only: when a list, every top-k selection is appended as (step, indices).
        self.selection_log: list[tuple[str, Tensor]] | None = None

    def _log(self, step: str, idx: Tensor) -> None:
        if self.selection_log is not None:
            self.selection_log.append((step, idx))

    def forward(self, img: Tensor, pos: Tensor, human: Tensor, sparse: Tensor, fine: Tensor | None) -> Tensor:
        """img (B,256,D) with pos added once, pos (1,256,D), human (1,1,D), sparse (1,17|22,D) -> (B,K,D)."""
        # expand_as: the target shape comes straight from a Shape op, so ONNX shape inference keeps (B, 1, D) static
        # but for the batch (an explicit expand(B, -1, -1) does not).
        x = torch.cat((human.expand_as(img[:, :1]), img), dim=1)              # (B,1+256,D)
        lead = 1
        pos = pos.expand_as(img)
        # "sine-full": pos is re-added to the image tokens before every layer. Adding a zero-padded copy to the
        # whole sequence is bit-identical (x + 0 == x) and costs one Add instead of Slice/Slice/Add/Concat.
        pos_pad = F.pad(pos, (0, 0, lead, 0))                                  # (B,1+256,D)
        logits = x.new_empty(0)
        for i, blk in enumerate(self.layers):
            if i > 0:
                x = x + pos_pad
            x, logits = blk.attend(x)
            if i == PRUNE_PLAIN_LAYER:
                idx = topk_indices(softmax_pool(logits[:, :, 0, lead:], dim=1), self.k["plain"][0])  # (B,179)
                self._log("plain", idx)
                img, pos = gather_rows(x[:, lead:], idx), gather_rows(pos, idx)
                kp = x[:, :1] + sparse                                         # human token -> 17 (22) tokens
                x, lead = torch.cat((kp, img), dim=1), kp.shape[1]
                pos_pad = F.pad(pos, (0, 0, lead, 0))                          # (B,17|22+179,D)
            x = blk.ffn(x)
        if self.cfg.wholebody:
            x, pos = self._split_wholebody(x, pos, logits, fine)
        else:
            x, pos = self._split_human(x, pos, logits)
        pos_pad = F.pad(pos, (0, 0, SLOTS, 0))                                 # (B,3,N,D), zeros on the slots
        for j, blk in enumerate(self.group_layers):
            x = x + pos_pad
            x, logits = blk.attend(x)
            if j == PRUNE_GROUP_LAYER:
                x, pos = (self._prune_wholebody(x, pos, logits) if self.cfg.wholebody
                          else self._prune_human(x, pos, logits))
                pos_pad = F.pad(pos, (0, 0, SLOTS, 0))
            x = blk.ffn(x)
        return self._readout(x)

    # ------------------------------------------------------------------ group split (between layers 5 and 6)
    def _group_inputs(self, x: Tensor, lead: int, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        body = x[:, lead - 17:lead]                                            # (B,17,D)
        kp = split_dim(torch.cat((body[:, :1], body), dim=1), 1, (GROUPS, SLOTS))  # dummy nose first: (B,3,6,D)
        img = x[:, lead:]                                                      # (B,179,D)
        gate = split_dim(self.group_mask(img), -1, (GROUPS, -1)).transpose(1, 2)  # (B,3,179,D)
        return kp, img.unsqueeze(1) * gate, pos.unsqueeze(1) * gate

    def _split_human(self, x: Tensor, pos: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        kp, img, pos = self._group_inputs(x, 17, pos)
        a = logits[:, :, :17, 17:]                                             # kp queries x image keys (B,H,17,179)
        score = _pool_human_groups(a[:, :, 0:5], split_dim(a[:, :, 5:17], 2, (2, SLOTS)))
        idx = topk_indices(score, self.k["transition"][0])                     # (B,3,76)
        self._log("transition", idx)
        return torch.cat((kp, gather_rows(img, idx)), dim=2), gather_rows(pos, idx)   # (B,3,82,D), (B,3,76,D)

    def _split_wholebody(self, x: Tensor, pos: Tensor, logits: Tensor, fine: Tensor) -> tuple[Tensor, Tensor]:
        kp, img, pos = self._group_inputs(x, 22, pos)
        parts = x[:, :5]
        xs, ps = [], []
        for g, (rows, keep) in enumerate(zip(_WB_SCORE_ROWS, self.k["transition"])):
            a = torch.cat([logits[:, :, r0:r1, 22:] for r0, r1 in rows], dim=2)   # (B,H,rows,179)
            idx = topk_indices(softmax_pool(merge_dims(a, 1, 2), dim=1), keep)  # (B,60|86|122)
            self._log(f"transition{g}", idx)
            dense = torch.cat([parts[:, p:p + 1] + fine[:, a0:a1] for p, a0, a1 in _FINE_SLICES[g]], dim=1)
            xs.append(torch.cat((kp[:, g], dense, gather_rows(img[:, g], idx)), dim=1))  # (B,134,D)
            # Dense tokens get an all-zero positional row.
            ps.append(torch.cat((torch.zeros_like(dense), gather_rows(pos[:, g], idx)), dim=1))  # (B,128,D)
        return torch.stack(xs, dim=1), torch.stack(ps, dim=1)

    # ------------------------------------------------------------------ group layer 3 pruning
    def _prune_human(self, x: Tensor, pos: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        a = logits[..., 17:]                                                   # image keys (B,H,3,82,76)
        score = _pool_human_groups(a[:, :, 0, 1:SLOTS], a[:, :, 1:, :SLOTS])  # group 0 without the dummy row
        idx = topk_indices(score, self.k["group"][0])                          # (B,3,25)
        self._log("group", idx)
        return torch.cat((x[:, :, :SLOTS], gather_rows(x[:, :, SLOTS:], idx)), dim=2), gather_rows(pos, idx)

    def _prune_wholebody(self, x: Tensor, pos: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        xs, ps = [], []
        for g, (dense, keep) in enumerate(zip(DENSE_PER_GROUP, self.k["group"])):
            first_row = 1 if g == 0 else 0                                     # skip the dummy query row
            a = logits[:, :, g, first_row:SLOTS + dense, 17 + dense:]          # kp+dense queries x image keys
            idx = topk_indices(softmax_pool(merge_dims(a, 1, 2), dim=1), keep)  # (B,8|34|70)
            self._log(f"group{g}", idx)
            start = SLOTS + dense
            xs.append(torch.cat((x[:, g, :start], gather_rows(x[:, g, start:], idx)), dim=1))
            ps.append(torch.cat((pos[:, g, :dense], gather_rows(pos[:, g, dense:], idx)), dim=1))
        return torch.stack(xs, dim=1), torch.stack(ps, dim=1)

    def _readout(self, x: Tensor) -> Tensor:
        body = merge_dims(x[:, :, :SLOTS], 1, 2)[:, 1:]                        # drop the dummy: (B,17,D)
        if not self.cfg.wholebody:
            return body
        # COCO-WholeBody order: body, feet (group 2), face (group 0), hands (group 1).
        return torch.cat((body, x[:, 2, SLOTS:SLOTS + 6], x[:, 0, SLOTS:SLOTS + 68], x[:, 1, SLOTS:SLOTS + 42]), dim=1)


def _pool_human_groups(a0: Tensor, a12: Tensor) -> Tensor:
    """Pruning scores of the 3 body groups: a0 (B,H,5,n) group 0's real rows, a12 (B,H,2,6,n) -> (B,3,n)."""
    s0 = softmax_pool(merge_dims(a0, 1, 2), dim=1)                             # (B,n)
    s12 = softmax_pool(merge_dims(a12.transpose(1, 2), 2, 3), dim=2)           # (B,2,n)
    return torch.cat((s0.unsqueeze(1), s12), dim=1)


class Features(nn.Module):
    """Stem, patch embedding, learned tokens and the transformer (the official ``ema_features``)."""

    def __init__(self, cfg: GTPTConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.cfg = cfg
        self.human_token = nn.Parameter(torch.zeros(1, 1, d))
        self.keypoint_token = nn.Parameter(torch.zeros(1, 17, d))
        if cfg.wholebody:
            self.extra_token = nn.Parameter(torch.zeros(1, 5, d))
            self.fine_keypoint_token = nn.Parameter(torch.zeros(1, sum(DENSE_PER_GROUP), d))
        # A fixed table, stored in checkpoints as a non-trainable parameter.
        self.pos_embedding = nn.Parameter(sine_table(d), requires_grad=False)
        self.stem = UStem(cfg.stem_channels) if cfg.backbone == "unet" else LiteStem(cfg.stem_channels)
        self.patch2emb_norm = nn.BatchNorm2d(cfg.stem_channels)
        self.patch2emb_mlp = nn.Linear(cfg.stem_channels * cfg.patch_size[0] * cfg.patch_size[1], d)
        self.transformer = Transformer(cfg)
        for name, p in self.named_parameters(recurse=False):
            if name.endswith("_token"):
                nn.init.trunc_normal_(p, std=0.02)

    def forward(self, images: Tensor) -> Tensor:
        p1, p2 = self.cfg.patch_size
        f = self.patch2emb_norm(self.stem(images))                             # (B,C,64,48)
        # Patchify + Linear == a (p1,p2)-strided conv whose kernel is the Linear weight, whose input features are
        # ordered (p1, p2, C): (D, p1*p2*C) -> (D, C, p1, p2). Exports as one Conv instead of a 6-D Transpose + Gemm.
        mlp = self.patch2emb_mlp
        weight = mlp.weight.unflatten(1, (p1, p2, f.shape[1])).permute(0, 3, 1, 2)
        img = merge_dims(F.conv2d(f, weight, mlp.bias, stride=(p1, p2)), 2, 3).transpose(1, 2)  # (B,256,D)
        img = img + self.pos_embedding
        sparse = torch.cat((self.extra_token, self.keypoint_token), 1) if self.cfg.wholebody else self.keypoint_token
        fine = self.fine_keypoint_token if self.cfg.wholebody else None
        return self.transformer(img, self.pos_embedding, self.human_token, sparse, fine)


class GTPT(nn.Module):
    """GTPT inference model. forward: float32 (B,3,256,192) normalized RGB crops -> (simcc_x (B,K,384), simcc_y (B,K,512))."""

    def __init__(self, cfg: GTPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bins_x, bins_y = cfg.simcc_bins
        self.ema_features = Features(cfg)
        self.ema_mlp_head_x = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, bins_x))
        self.ema_mlp_head_y = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, bins_y))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.ema_features(images)                                     # (B,K,D)
        return self.ema_mlp_head_x(tokens), self.ema_mlp_head_y(tokens)
