"""``ar``: a class-conditional GPT over a tokenizer's token grid (nanoGPT's model, LlamaGen's c2i conditioning).

A tokenizer turns an image into T = h·w positions in raster order, each holding M sub-indices in [0, K): M = 1 for
vq, vq-fc, vq-ema and lc, M subspaces for pq. The prior models p(x | y) one step at a time after a class token, the
embedding of the label y. Label ``num_classes`` is the null class: training replaces a label by it with probability
``class_dropout``, so one model is both p(x | y) and p(x), which classifier-free guidance needs; unconditional
models (``num_classes = 0``) use it for every image.

Two orders for the M sub-indices of a position (``GPTConfig.head``):

- ``"factorised"`` (default): one step per position. The input of position t is the sum of its M sub-index
  embeddings; the output before it predicts all M sub-indices with M independent softmaxes,
  p(x_t | x_<t, y) = Π_m p(x_t,m | x_<t, y). T steps. Exact for M = 1; for M > 1 the sub-indices of one position are
  assumed independent given the past.
- ``"flat"``: the exact chain rule over the T·M sub-tokens in position-major order (t0m0, t0m1, ..., t1m0, ...), each
  conditioned on every sub-token before it. T·M steps: M times the sequence, M² the attention cost.

Both have the same parameters: M embedding tables of K rows (one (M·K, C) table), a position embedding (T rows
factorised, T·M flat) and one C → M·K head read as M heads of K logits. At M = 1 they are the same model, parameter
for parameter.

Sequence layout (both): element 0 is the class token, element i + 1 holds (sub-)token i. The last (sub-)token is never
an input, so the transformer runs on L = T (factorised) or T·M (flat) elements and output i predicts (sub-)token i.

Sampling (``TokenGPT.generate``) runs one element per step with a key/value cache: L steps, each a forward pass of a
single element over the cached keys and values of the elements before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from pqstudy.generation import draw

HEADS = ("factorised", "flat")

# (n_layer, n_head, n_embd) presets: GPTConfig(positions=T, **GPT_SIZES["small"]).
GPT_SIZES = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 32},  # tests
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 96},  # the CPU study: ≈0.65M parameters at T=64, M·K=1024
    "gpt-l": {"n_layer": 24, "n_head": 16, "n_embd": 1024},  # LlamaGen GPT-L (≈343M); paper scale, never trained here
}


@dataclass
class GPTConfig:
    positions: int  # T = h·w token positions of one image, raster order
    subspaces: int = 1  # M sub-indices per position: PQ's subspaces; 1 for vq, vq-fc, vq-ema, lc
    vocab_size: int = 1024  # K, the codebook size of each subspace
    num_classes: int = 10  # 0 = unconditional (folder data); label num_classes is the null class (CFG)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # C; a multiple of n_head
    dropout: float = 0.0  # embeddings, attention, residual branches; 0: the study trains too few epochs to overfit
    head: str = "factorised"  # "factorised": M softmaxes per position, T steps; "flat": exact chain rule, T·M steps
    class_dropout: float = 0.1  # P(label → null class) per image in training: one model learns p(x|y) and p(x)

    def __post_init__(self):
        for name in ("positions", "subspaces", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)!r}: must be at least 1")
        if self.vocab_size < 2:
            raise ValueError(f"GPTConfig.vocab_size={self.vocab_size!r}: must be at least 2")
        if self.num_classes < 0:
            raise ValueError(f"GPTConfig.num_classes={self.num_classes!r}: must be 0 (unconditional) or more")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if self.head not in HEADS:
            raise ValueError(f"GPTConfig.head={self.head!r}: one of {HEADS}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout={self.dropout!r}: must be in [0, 1)")
        if not 0.0 <= self.class_dropout <= 1.0:
            raise ValueError(f"GPTConfig.class_dropout={self.class_dropout!r}: must be in [0, 1]")

    @property
    def steps(self) -> int:
        """L, the transformer's sequence length: the class token and every (sub-)token but the last."""
        return self.positions * self.subspaces if self.head == "flat" else self.positions

    @property
    def null_class(self) -> int:
        return self.num_classes


# ---------------------------------------------------------------------------------------------------------------
# the transformer (nanoGPT's pre-norm block)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: list[Tensor] | None = None) -> Tensor:
        """x: (B, L, C) → (B, L, C). ``cache``: None (x is a whole sequence, causal mask), or a list holding the
        keys and values of the elements before x ([] at the first element), extended in place; x is then one element
        and attends to all of them."""
        B, L, C = x.shape
        q, k, v = (t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if cache is not None:
            if L != 1:
                raise ValueError(f"a cached forward takes one element at a time, got {L}")
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=cache is None and L > 1
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, L, C)))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(cfg.n_embd), CausalSelfAttention(cfg)
        self.ln_2, self.mlp = nn.LayerNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x: Tensor, cache: list[Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


# ---------------------------------------------------------------------------------------------------------------
# the prior


class TokenGPT(nn.Module):
    """p(x | y) over token grids x: (B, M, T) long in [0, K), labels y: (B,) long in [0, num_classes]."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        M, K, C = cfg.subspaces, cfg.vocab_size, cfg.n_embd
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)  # + the null class
        self.token_emb = nn.Embedding(M * K, C)  # M tables: row m·K + k embeds code k of subspace m
        self.pos_emb = nn.Embedding(cfg.steps, C)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, M * K)  # M heads: outputs m·K .. m·K + K - 1 are the logits of subspace m
        self.register_buffer("offsets", torch.arange(M) * K, persistent=False)  # (M,) first row of each table
        self.apply(_init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/√(2·n_layer)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    # ---- likelihood

    def logits(self, x: Tensor, y: Tensor | None) -> Tensor:
        """x: (B, M, T), y: (B,) → (B, T, M, K): logits of sub-token (t, m) given every (sub-)token before it."""
        self._check_indices(x, "x")
        return self._logits(x, self._labels(y, x.shape[0]))

    def loss(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None = None,
             share: tuple[int, int] = draw.WHOLE) -> Tensor:
        """Mean NLL in nats per sub-token. In training mode each label becomes the null class with probability
        ``class_dropout`` (drawn from ``generator``; ``share=(rank, world_size)``: ``x`` is that rank's rows of a
        data-parallel global batch, and the draws are its rows of the global batch's, :mod:`.draw`)."""
        self._check_indices(x, "x")
        y = self._labels(y, x.shape[0])
        if self.training and self.cfg.num_classes and self.cfg.class_dropout:
            drop = draw.rand(y.shape[0], generator=generator, device=y.device, share=share) < self.cfg.class_dropout
            y = torch.where(drop, self.cfg.null_class, y)
        logits = self._logits(x, y).float()  # the loss in fp32 under bf16 autocast (gen.precision)
        return F.cross_entropy(logits.reshape(-1, self.cfg.vocab_size), x.transpose(1, 2).reshape(-1))

    def nll(self, x: Tensor, y: Tensor | None) -> Tensor:
        """(B,) NLL of each image in nats, summed over its T·M sub-tokens; no class dropout (call ``eval()`` first
        when ``dropout`` > 0). Divide by ln 2 for bits per image."""
        logits = self.logits(x, y)
        per_token = F.cross_entropy(
            logits.reshape(-1, self.cfg.vocab_size), x.transpose(1, 2).reshape(-1), reduction="none"
        )
        return per_token.view(x.shape[0], -1).sum(dim=1)

    def _logits(self, x: Tensor, y: Tensor) -> Tensor:
        h = self._transformer(self._inputs(x, y))  # (B, L, C)
        B, M, T = x.shape
        if self.cfg.head == "factorised":
            return self.head(h).view(B, T, M, self.cfg.vocab_size)
        h = h.view(B, T, M, -1)  # element t·M + m predicts sub-token (t, m) with head m
        return torch.stack([self._head_of(h[:, :, m], m) for m in range(M)], dim=2)

    def _inputs(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, L, C): the class token, then the embeddings of every (sub-)token but the last, plus positions."""
        emb = self.token_emb(x.transpose(1, 2) + self.offsets)  # (B, T, M, C)
        tokens = emb.sum(dim=2) if self.cfg.head == "factorised" else emb.flatten(1, 2)
        seq = torch.cat([self.class_emb(y)[:, None], tokens[:, :-1]], dim=1)
        return self.drop(seq + self.pos_emb.weight)

    def _transformer(self, h: Tensor, caches: list[list[Tensor]] | None = None) -> Tensor:
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        return self.ln_f(h)

    def _head_of(self, h: Tensor, m: int) -> Tensor:
        """(..., C) → (..., K): the logits of subspace m."""
        K = self.cfg.vocab_size
        return F.linear(h, self.head.weight[m * K : (m + 1) * K], self.head.bias[m * K : (m + 1) * K])

    # ---- sampling

    @torch.no_grad()
    def generate(
        self,
        y: Tensor | None,
        *,
        num_samples: int | None = None,  # B when y is None (unconditional models only)
        temperature: float = 1.0,
        top_k: int = 0,  # keep the k most likely codes of each softmax; 0 = all
        top_p: float = 1.0,  # nucleus: the fewest codes holding mass ≥ top_p; 1.0 = all
        cfg_scale: float = 1.0,  # classifier-free guidance s: uncond + s·(cond − uncond); 1 = the conditional model
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(B, M, T) long in [0, K): samples for labels y (B,). Guidance runs the conditional and null-class rows in
        one batch; ``cfg_scale == 1`` skips the null rows, so it samples exactly the conditional model. Call
        ``eval()`` first when ``dropout`` > 0 (the mode is left as it is)."""
        cfg = self.cfg
        _check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
        if not math.isfinite(cfg_scale):
            raise ValueError(f"cfg_scale={cfg_scale!r}: must be a finite number (1 = no guidance)")
        if cfg_scale != 1.0 and not cfg.num_classes:
            raise ValueError(f"cfg_scale={cfg_scale!r}: guidance needs a class-conditional model (num_classes=0)")
        B = self._sample_count(y, num_samples)
        labels = self._labels(y, B)
        guided = cfg_scale != 1.0
        if guided:  # rows B.. are the same images under the null class
            labels = torch.cat([labels, torch.full_like(labels, cfg.null_class)])
        x = torch.zeros(labels.shape[0], cfg.subspaces, cfg.positions, dtype=torch.long, device=labels.device)
        caches: list[list[Tensor]] = [[] for _ in self.blocks]
        for i in range(cfg.steps):
            logits = self._step_logits(x, labels, i, caches)
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + cfg_scale * (cond - uncond)
            codes = sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            self._write(x, i, codes.repeat(2, 1) if guided else codes)
        return x[:B]

    def _step_logits(self, x: Tensor, y: Tensor, i: int, caches: list[list[Tensor]]) -> Tensor:
        """Step i of sampling: feed sequence element i through the cached transformer → the logits of (sub-)token i,
        (B, M, K) factorised, (B, 1, K) flat."""
        h = self._transformer(self._element(x, y, i), caches)[:, -1]  # (B, C)
        if self.cfg.head == "factorised":
            return self.head(h).view(h.shape[0], self.cfg.subspaces, self.cfg.vocab_size)
        return self._head_of(h, i % self.cfg.subspaces)[:, None]

    def _write(self, x: Tensor, i: int, codes: Tensor) -> None:
        """Store the codes sampled at step i into x (B, M, T): position i (factorised) or sub-token i (flat)."""
        if self.cfg.head == "factorised":
            x[:, :, i] = codes
        else:
            t, m = divmod(i, self.cfg.subspaces)
            x[:, m, t] = codes[:, 0]

    def _element(self, x: Tensor, y: Tensor, i: int) -> Tensor:
        """(B, 1, C): sequence element i of ``_inputs`` alone (the class token, or the (sub-)token before step i)."""
        if i == 0:
            emb = self.class_emb(y)
        elif self.cfg.head == "factorised":
            emb = self.token_emb(x[:, :, i - 1] + self.offsets).sum(dim=1)
        else:
            t, m = divmod(i - 1, self.cfg.subspaces)
            emb = self.token_emb(x[:, m, t] + self.offsets[m])
        return self.drop(emb + self.pos_emb.weight[i])[:, None]

    # ---- input checks

    def _sample_count(self, y: Tensor | None, num_samples: int | None) -> int:
        """B for ``generate``: the number of labels, or ``num_samples`` when an unconditional model gets y=None."""
        if y is None:
            if self.cfg.num_classes:
                raise ValueError(f"y=None: the model is class-conditional (num_classes={self.cfg.num_classes})")
            if not isinstance(num_samples, int) or num_samples < 1:
                raise ValueError(f"num_samples={num_samples!r}: give a positive count when y is None")
            return num_samples
        if not isinstance(y, Tensor) or y.dim() != 1:
            raise ValueError(f"y={y!r}: expected a (B,) tensor of labels")
        if num_samples is not None and num_samples != y.shape[0]:
            raise ValueError(f"num_samples={num_samples!r} differs from the {y.shape[0]} labels in y")
        return y.shape[0]

    def _check_indices(self, x: Tensor, name: str) -> None:
        cfg = self.cfg
        if not isinstance(x, Tensor) or x.dtype != torch.long or x.dim() != 3:
            what = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a long tensor (B, M, T), got a {what}")
        if x.shape[1] != cfg.subspaces or x.shape[2] != cfg.positions:
            raise ValueError(
                f"{name}: shape {tuple(x.shape)} has M={x.shape[1]}, T={x.shape[2]}; the model expects "
                f"M=subspaces={cfg.subspaces}, T=positions={cfg.positions}"
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.vocab_size):
            raise ValueError(
                f"{name}: indices in [{int(x.min())}, {int(x.max())}], outside [0, vocab_size={cfg.vocab_size})"
            )

    def _labels(self, y: Tensor | None, batch: int) -> Tensor:
        """(B,) long labels; every image gets the null class when the model is unconditional (y is ignored)."""
        cfg = self.cfg
        device = self.pos_emb.weight.device
        if not cfg.num_classes:
            return torch.full((batch,), cfg.null_class, dtype=torch.long, device=device)
        if not isinstance(y, Tensor) or y.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            raise ValueError(f"y={y!r}: expected an integer tensor of labels (num_classes={cfg.num_classes})")
        if tuple(y.shape) != (batch,):
            raise ValueError(f"y: shape {tuple(y.shape)}, expected ({batch},), one label per image")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > cfg.num_classes):
            raise ValueError(
                f"y: labels in [{int(y.min())}, {int(y.max())}], outside [0, num_classes={cfg.num_classes}] "
                f"(label {cfg.num_classes} is the null class)"
            )
        return y.long().to(device)


# ---------------------------------------------------------------------------------------------------------------
# sampling


def forward_flops(cfg: GPTConfig) -> int:
    """FLOPs of one training forward pass of one image (all T positions, teacher-forced), measured by
    ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes only: GPT-L costs no memory), 2 FLOPs per
    multiply-add of the matrix products and attention; norms, activations and additions not counted."""
    with torch.device("meta"):
        model = TokenGPT(cfg)
        x = torch.zeros(1, cfg.subspaces, cfg.positions, dtype=torch.long)
        y = torch.full((1,), cfg.null_class, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        model._logits(x, y)  # the values' checks of logits() need data, which meta tensors have not
    return int(counter.get_total_flops())


def sample_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(..., K) logits → (...) long codes, one draw per softmax: divide by ``temperature``, keep the ``top_k`` most
    likely codes (0 = all), then the nucleus of mass ``top_p`` (the fewest codes whose probability sums to at least
    top_p, 1.0 = all), renormalise and sample."""
    _check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    logits = logits / temperature
    if top_k:
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(-1, logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices, True)
        logits = logits.masked_fill(~keep, -math.inf)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass before a code already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), -math.inf)
    probs = logits.softmax(dim=-1)
    return draw.multinomial(probs.reshape(-1, probs.shape[-1]), generator=generator).view(probs.shape[:-1])


def _check_sampling(*, temperature: float, top_k: int, top_p: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k={top_k!r}: must be an integer ≥ 0 (0 = off)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p!r}: must be in (0, 1] (1.0 = off)")


def _init_weights(module: nn.Module) -> None:
    """nanoGPT / GPT-2: weights N(0, 0.02), biases 0 (LayerNorm keeps its ones and zeros)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
