"""Building blocks of the GTPT family: ShuffleNetV2 stems, the 2-D sine table, attention blocks, pruning helpers.

Module and parameter names mirror the official code so that official checkpoints load without renaming
(``stem.layer.0.branch2.3``, ``layers.4.0.fn.fn.to_qkv`` ...). Everything here is written for export:
no in-place slice updates, attention as MatMul, reshapes that never read the batch size, and no constant
outside the float16 range. Layouts are chosen for a lean ONNX graph (see ``concat_shuffle``, ``split_dim``,
``GroupAttention.key_index``, ``gather_rows``).
"""

from __future__ import annotations

import math

from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch
from torch import Tensor, nn


# ----------------------------------------------------------------------------------------------- CNN stem
def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # Every official conv carries a bias (even before BatchNorm): keep it so checkpoints load strictly.
    return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=True)


def split_dim(x: Tensor, dim: int, sizes: tuple[int, ...]) -> Tensor:
    """``x.unflatten(dim, sizes)`` (dim >= 1) as a reshape whose only traced size is the batch (dim 0).

    Export reasons: the legacy ONNX exporter bakes the example batch into ``unflatten``, and a ``-1`` or a size read
    from a traced shape leaves ONNX shape inference with unknown dims under a dynamic batch. Every non-batch size is
    a Python int here (static for the fixed 256x192 input), so all dims but the batch stay concrete.
    """
    dim = dim % x.dim()
    rest = [int(s) for s in x.shape[1:]]                                       # static sizes, batch excluded
    sizes = [int(s) for s in sizes]
    if -1 in sizes:
        # A list, not a generator: torch.compile graph-breaks on math.prod(<generator>).
        known = [s for s in sizes if s != -1]
        sizes[sizes.index(-1)] = rest[dim - 1] // math.prod(known)
    return x.reshape([x.shape[0], *rest[:dim - 1], *sizes, *rest[dim:]])


def merge_dims(x: Tensor, start: int, end: int) -> Tensor:
    """``x.flatten(start, end)`` (start >= 1) with static non-batch sizes, for the reasons given in ``split_dim``."""
    end = end % x.dim()
    rest = [int(s) for s in x.shape[1:]]                                       # static sizes, batch excluded
    return x.reshape([x.shape[0], *rest[:start - 1], math.prod(rest[start - 1:end]), *rest[end:]])


def concat_shuffle(a: Tensor, b: Tensor) -> Tensor:
    """ShuffleNetV2 ``channel_shuffle(cat((a, b), 1))`` with 2 groups, i.e. interleave the channels of a and b.

    (B,C/2,H,W) x 2 -> (B,C,H,W), channel 2i = a[i], 2i+1 = b[i]. Exports as one Concat on a new axis + Reshape
    (whole H*W planes are copied) instead of Concat + Reshape + 5-D Transpose + Reshape.
    """
    return merge_dims(torch.stack((a, b), dim=2), 1, 2)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit. Stride 1 keeps half the channels and transforms the other half; stride 2 has two branches."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _conv(cin, cin, 3, stride, groups=cin), nn.BatchNorm2d(cin),
                _conv(cin, half, 1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            )
        b2_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            _conv(b2_in, half, 1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _conv(half, half, 3, stride, groups=half), nn.BatchNorm2d(half),
            _conv(half, half, 1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            return concat_shuffle(keep, self.branch2(work))
        return concat_shuffle(self.branch1(x), self.branch2(x))


def _stage(cin: int, cout: int, blocks: int, first_stride: int) -> nn.Sequential:
    return nn.Sequential(InvertedResidual(cin, cout, first_stride),
                         *[InvertedResidual(cout, cout, 1) for _ in range(blocks - 1)])


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, k, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LiteStem(nn.Module):
    """T / S stem: 3x3 s2 conv then one ShuffleNetV2 stage. (B,3,256,192) -> (B,C,64,48)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(3, 64, 3, 2)
        self.layer = _stage(64, channels, 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(self.conv1(x))


class _Upsample(nn.Sequential):
    """1x1 conv to 4C, PixelShuffle(2), BN, ReLU (official ``upsampleN`` indices 0..3)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv(cin, 4 * cout, 1), nn.PixelShuffle(2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UStem(nn.Module):
    """B stem: U-shaped ShuffleNetV2, 3 down stages (256/384/512) and 2 PixelShuffle up stages. -> (B,256,64,48)."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(3, 64, 3, 2)
        self.down_layer1 = _stage(64, channels, 4, 2)
        self.down_layer2 = _stage(channels, 384, 4, 2)
        self.down_layer3 = _stage(384, 512, 4, 2)
        self.upsample1 = _Upsample(512, 384)
        self.up_layer1 = nn.Sequential(_conv_bn_relu(768, 384, 1), *[InvertedResidual(384, 384, 1) for _ in range(2)])
        self.upsample2 = _Upsample(384, channels)
        self.up_layer2 = nn.Sequential(_conv_bn_relu(2 * channels, channels, 1),
                                       *[InvertedResidual(channels, channels, 1) for _ in range(2)])

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.down_layer1(self.conv1(x))                                   # (B,256,64,48)
        x2 = self.down_layer2(x1)                                              # (B,384,32,24)
        x3 = self.down_layer3(x2)                                              # (B,512,16,12)
        x2 = self.up_layer1(torch.cat((x2, self.upsample1(x3)), dim=1))        # skip first: (B,768,32,24) -> 384
        return self.up_layer2(torch.cat((x1, self.upsample2(x2)), dim=1))      # (B,512,64,48) -> 256


def sine_table(dim: int, h: int = 16, w: int = 16, temperature: float = 10000.0) -> Tensor:
    """DETR-style 2-D sine table, (1, h*w, dim): channels [y-features, x-features], sin/cos interleaved."""
    feats = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = (torch.arange(1, h + 1, dtype=torch.float32) / (h + eps) * scale)[:, None].expand(h, w)
    x = (torch.arange(1, w + 1, dtype=torch.float32) / (w + eps) * scale)[None, :].expand(h, w)
    dim_t = temperature ** (2 * torch.div(torch.arange(feats), 2, rounding_mode="floor") / feats)

    def encode(e: Tensor) -> Tensor:
        e = e[..., None] / dim_t                                               # (h, w, F)
        return torch.stack((e[..., 0::2].sin(), e[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(y), encode(x)), dim=-1).reshape(1, h * w, dim)


# ----------------------------------------------------------------------------------------------- transformer
class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        # Indices 0 and 3 as in the official Sequential(Linear, GELU, Dropout, Linear, Dropout).
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _HeadsMixin(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        # GTPT scales by the full model dim, not the head dim (scale_with_head=False in the official code).
        self.scale = dim ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim))


class Attention(_HeadsMixin):
    """Plain multi-head self-attention. (B,N,D) -> (B,N,D) and the pre-softmax logits (B,H,N,N)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        qkv = split_dim(self.to_qkv(x), -1, (3 * self.heads, -1)).transpose(1, 2)       # (B,3H,N,dh)
        q, k, v = qkv.chunk(3, dim=1)                                                   # (B,H,N,dh) each
        logits = (q * self.scale) @ k.transpose(-1, -2)                                 # (B,H,N,N)
        out = merge_dims((logits.softmax(-1) @ v).transpose(1, 2), 2, 3)                # (B,N,D)
        return self.to_out(out), logits


class GroupAttention(_HeadsMixin):
    """Multi-Head Group Attention over (B,G,N,D) where the first 6 tokens of every group are keypoint slots.

    Each group attends to the keypoint slots of ALL groups plus its own remaining tokens. The official model keeps a
    dummy slot (group 0, slot 0) that a boolean mask removes from every key set; here that key is simply never built,
    which is exact (its masked weight is 0) and leaves no out-of-fp16-range fill value in the graph.
    Returns (B,G,N,D) and the logits (B,H,G,N,17 + N-6): keys = [17 real keypoint slots, own tokens 6..N).
    """

    slots = 6

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self._key_index: dict[tuple[int, int], Tensor] = {}

    def key_index(self, groups: int, n: int) -> Tensor:
        """(G, 17 + n-6) positions in the flattened (G*n) token axis: every group's keys/values.

        Keys of group g = the keypoint slots of all groups except the dummy (group 0, slot 0), then g's own tokens.
        A constant, so the key sets are built by one Gather instead of Slice/Expand/Concat chains.
        """
        cached = self._key_index.get((groups, n))
        if cached is None:
            shared = [g * n + s for g in range(groups) for s in range(self.slots)][1:]
            cached = torch.tensor([shared + list(range(g * n + self.slots, (g + 1) * n)) for g in range(groups)])
            self._key_index[(groups, n)] = cached
        return cached

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        groups, n = x.shape[1], x.shape[2]
        qkv = split_dim(self.to_qkv(x), -1, (3 * self.heads, -1)).permute(0, 3, 1, 2, 4)  # (B,3H,G,N,dh)
        q, k, v = qkv.chunk(3, dim=1)                                                    # (B,H,G,N,dh) each
        idx = self.key_index(groups, n).to(x.device)
        k = merge_dims(k, 2, 3)[:, :, idx]                                               # (B,H,G,Nk,dh)
        v = merge_dims(v, 2, 3)[:, :, idx]
        logits = (q * self.scale) @ k.transpose(-1, -2)                                 # (B,H,G,N,Nk)
        out = logits.softmax(-1) @ v                                                    # (B,H,G,N,dh)
        return self.to_out(merge_dims(out.permute(0, 2, 3, 1, 4), 3, 4)), logits


class Block(nn.ModuleList):
    """Pre-norm attention + FFN; children '0' and '1' as in the official checkpoints (``layers.{i}.0.fn.norm``)."""

    def __init__(self, dim: int, hidden: int, attn: nn.Module) -> None:
        super().__init__([_Residual(_PreNorm(dim, attn)), _Residual(_PreNorm(dim, FeedForward(dim, hidden)))])

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self[0].fn
        out, logits = pre.fn(pre.norm(x))
        return x + out, logits

    def ffn(self, x: Tensor) -> Tensor:
        pre = self[1].fn
        return x + pre.fn(pre.norm(x))


# ----------------------------------------------------------------------------------------------- pruning
def softmax_pool(a: Tensor, dim: int) -> Tensor:
    """Soft maximum of the logits along ``dim``: sum(a * softmax(a)). Computed in float32 (scores drive top-k)."""
    a = a.float()
    return (a * a.softmax(dim)).sum(dim)


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """Row gather: x (..., N, D), idx (..., k) int64 with the same leading dims -> (..., k, D).

    One flat ``index_select`` with per-row offsets: exports to a single ONNX Gather on rows of (rows, D) instead of
    a GatherElements over a materialized (..., k, D) index tensor. The offsets come from ``idx``'s own traced
    batch size, so a dynamic batch stays dynamic.
    """
    lead = [int(s) for s in idx.shape[1:-1]]                                  # () or (G,): static
    n, d, k = int(x.shape[-2]), int(x.shape[-1]), int(idx.shape[-1])
    offsets = torch.arange(idx.shape[0] * math.prod(lead), device=idx.device) * n   # (B*G,), batch traced
    rows = idx + offsets.reshape([idx.shape[0], *lead, 1])                    # (..., k) rows of the flat x
    return x.flatten(0, -2).index_select(0, rows.flatten()).reshape([idx.shape[0], *lead, k, d])


def topk_indices(score: Tensor, k: int) -> Tensor:
    """Indices of the k largest scores along the last dim (sorted; the order of kept tokens is irrelevant)."""
    return score.topk(k, dim=-1, largest=True, sorted=True).indices
