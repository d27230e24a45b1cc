"""The papers' recipes as their code has them: config overrides, the static-codebook arm, and what still differs.

``PQGAN`` and ``VQGAN_LC`` are ``{"section.field": value}`` overrides (``pqstudy.config.apply_overrides``) that turn a
profile's config into the authors' quantiser recipe, for that paper's grids. Only what a CIFAR-10 run on a CPU can
take is here; learning rate, steps, data, model width and the GAN/LPIPS terms stay in the profiles and are listed in
``DIVERGENCES``. Apply a recipe first and a grid's own overrides after it (a grid that sweeps, e.g., ``quantizer.dim``
or ``quantizer.low_dim`` wins over the recipe).

Citations: ``file:line`` at these commits (line numbers of PQGAN counted in the stored file text):

- VQGAN-LC: zh460045050/VQGAN-LC @ 4708958f (``vqgan-gpt-lc/...``, ``codebook_generation/...``);
- PQGAN: vislearn/PQGAN @ 38915bba (``src/vv/models/latent_diffusion_copy/...``), config @ ed3535cf
  (``config/latent_diffusion/F8_K512_Z128_S64/config.yaml``);
- taming: CompVis/taming-transformers @ 3ba01b24 (``taming/modules/vqvae/quantize.py``).
"""

from __future__ import annotations

from pqstudy.config import ConfigError, apply_overrides, get_profile, lookup_dim

__all__ = ["DIVERGENCES", "PQGAN", "VQGAN_LC", "static_arm", "static_feature_dim"]

_LC = "VQGAN-LC vqgan-gpt-lc/"
_PQ = "PQGAN src/vv/models/latent_diffusion_copy/"
_PQ_CFG = "PQGAN config/latent_diffusion/F8_K512_Z128_S64/config.yaml"

PQGAN: dict[str, str] = {
    # SplitVectorQuantiser, the quantiser PQGAN uses by default (vq_model.py:34 split_quantizer=True, :64), looks up
    # its own nn.ModuleList of nn.Embedding (vector_quantizer_split.py:27-29) and never re-initialises them: torch's
    # nn.Embedding default, N(0, 1) — not taming's U(±1/K) (vector_quantizer.py:24 initialises the parent's unused
    # self.embedding only). This holds for M = 1 as well: PQGAN's VQ baseline is the split quantiser with one space.
    "quantizer.init": "normal",
    "quantizer.beta": "0.25",  # PQGAN vq_model.py:59 (beta=0.25 passed to SplitVectorQuantiser; :56 the same)
    # PQGAN vector_quantizer.py:16 legacy=True (default, not overridden: vector_quantizer_split.py:20 passes only
    # n_e, e_dim, beta); loss vector_quantizer_split.py:86-91: ‖sg(z_q)−z‖² + β‖z_q−sg(z)‖² (taming quantize.py:294)
    "quantizer.legacy": "true",
    "quantizer.l2_norm": "false",  # PQGAN config.yaml:102 distance_type: l2 (cosine is vector_quantizer_split.py:60)
    "loss.codebook_weight": "1.0",  # PQGAN config.yaml:86 codebook_weight: 1.0 (loss.py: + codebook_weight·q_loss)
}

VQGAN_LC: dict[str, str] = {
    # the quantiser loss, models_vq.py:203: mean((sg(z_q)−z)²) + 0.33·mean((z_q−sg(z))²) — weight 1 on the
    # commitment term, 0.33 on the codebook term: taming's legacy form with β = 0.33 ...
    "quantizer.beta": "0.33",
    "quantizer.legacy": "true",
    # ... times rate_q = 0.1 in the total loss (training_vqgan.py:261 --rate_q default 0.1, not set by
    # runTrainVQ.sh; models_vq.py:252 loss = rec + rate_q·qloss + ...): 0.1·(‖sg(z_q)−z‖² + 0.33‖z_q−sg(z)‖²)
    "loss.codebook_weight": "0.1",
    "quantizer.dim": "8",  # runTrainVQ.sh:24 / README.md:71 --embed_dim 8 (vq-f16.yaml:5 embed_dim: 8)
    # VQ and FC baselines: a codebook of embed_dim entries drawn from U(±1/K), trained (models_vq.py:67-73,
    # --tuning_codebook -1); the EMA baseline starts from the same codebook (models_vq.py:130 embed_avg = its clone)
    "quantizer.init": "uniform",
    # FC baseline: the released code has no separate factorised path; every arm looks codes up in embed_dim = 8
    # dimensions after quant_conv z_channels (256) → 8 (models_vq.py:110), without l2-normalisation (below). Our
    # vq-fc lookup dim D′ therefore = 8 (today's default D/2 = 4).
    "quantizer.low_dim": "8",
    # latents are l2-normalised only when embed_dim == 768 with a non-random codebook (models_vq.py:269-270, the
    # CLIP-feature static arm); never at embed_dim 8
    "quantizer.l2_norm": "false",
    # EMA baseline (--quantizer_type ema): decay 0.99, eps 1e-5 (models_vq.py:127-128), cluster sizes start at 0
    # (models_vq.py:129 torch.zeros), loss F.mse_loss(z_q.detach(), z) with weight 1 (models_vq.py:198), times rate_q
    "quantizer.ema_decay": "0.99",
    "quantizer.ema_eps": "1e-5",
    "quantizer.ema_count_init": "0",
    "quantizer.ema_beta": "1.0",
    # LC: frozen codebook (runTrainVQ.sh:22 --tuning_codebook 0; models_vq.py:83-93 requires_grad False) with a
    # linear projector (runTrainVQ.sh:23 --use_cblinear 1; models_vq.py:113-115) whose weight is drawn from
    # N(0, std = embed_dim^−½) (models_vq.py:116; bias: nn.Linear's default)
    "quantizer.lc_trainable": "false",
    "quantizer.projector": "linear",
    "quantizer.projector_init": "normal",
    # the codebook: k-means centres of image features (codebook_generation/run.sh:3-11,
    # minibatch_kmeans_per_class.py:81); "random initialization" is U(±1/N) (models_vq.py:72) → lc_init=uniform
    "quantizer.lc_init": "kmeans",
}


def static_feature_dim(cfg) -> int:
    """C of the ``lc`` codebook features of ``RunConfig`` cfg, known without loading anything: 3·F² for pixel patches,
    ``lc_feature_dim`` or D′ for ``random``. Other sources (encoder, CLIP) raise: pass ``feature_dim``."""
    q = cfg.quantizer
    if q.lc_source == "pixels":
        return 3 * q.lc_patch * q.lc_patch
    if q.lc_source == "random":
        subspaces = q.subspaces if q.kind == "pq" else 1
        return q.lc_feature_dim or lookup_dim("lc", q.dim, q.low_dim, subspaces)
    raise ConfigError(f"quantizer.lc_source={q.lc_source!r}: C is not known without loading the source; "
                      "pass static_arm(..., feature_dim=C)")


def static_arm(overrides: dict, profile: str = "default", feature_dim: int = 0) -> dict:
    """The overrides of the static-codebook arm without projector that shares the projector arm's codebook.

    ``overrides`` describe the projector arm (an ``lc`` or ``pq`` of ``lc`` run, applied to ``profile``). The static
    arm keeps every codebook input (``lc_source``, ``lc_init``, ``codebook_size``, ``lc_patch``, ``lc_samples``,
    ``lc_kmeans_iters``, ``train.seed``, data) — hence the very same cached (N, C) codebook tensor — and sets
    ``projector=none``, ``low_dim=0`` and ``quantizer.dim = C`` (M·C for ``pq``).

    Why ``dim = C``: VQGAN-LC's static baseline (``--tuning_codebook 0 --use_cblinear 0``) looks latents up directly
    in the (N, C) feature codebook (models_vq.py:83-93, 174-177), so its ``quant_conv`` maps z_channels → embed_dim =
    C (models_vq.py:110; ``z_flattened.view(-1, e_dim)`` at :171 only matches the codebook when embed_dim = C). Our
    ``quantizer.dim`` is that same quant_conv width, so the encoder emits C-dim latents (48 for pixel patches at
    F = 4). A latent projection D → C via ``low_dim`` would add a learned linear map the paper's static arm has not.
    The ``random`` source fixes C through ``lc_feature_dim`` so the changed dim does not change the codebook.
    """
    base = apply_overrides(get_profile(profile), overrides)
    q = base.quantizer
    if not (q.kind == "lc" or (q.kind == "pq" and q.sub_kind == "lc")):
        raise ConfigError(f"quantizer.kind={q.kind!r}: static_arm needs an lc run (kind=lc, or pq with sub_kind=lc)")
    c = feature_dim or static_feature_dim(base)
    subspaces = q.subspaces if q.kind == "pq" else 1
    out = dict(overrides)
    out.update({"quantizer.projector": "none", "quantizer.low_dim": "0", "quantizer.dim": str(c * subspaces)})
    if q.lc_source == "random":
        out["quantizer.lc_feature_dim"] = str(c)
    return out


def _div(what: str, paper: str, ours: str, why: str) -> dict:
    return {"what": what, "paper": paper, "ours": ours, "why": why}


DIVERGENCES: list[dict] = [
    _div("data", "ImageNet train, 256×256 (VQGAN-LC runTrainVQ.sh:8; PQGAN config.yaml:104-106)",
         "CIFAR-10 train, 32×32", "a study on 2 CPU cores; ImageNet is not available offline"),
    _div("codebook features", "CLIP ViT-L/14 patch features of ImageNet (C = 768), avg-pooled 4×4 "
         "(VQGAN-LC codebook_generation/clip_feature_generation.py:193, 212; minibatch_kmeans_per_class.py:73-79)",
         "F×F×3 pixel patches in [−1, 1] (C = 48 at F = 4), lc_source=pixels",
         "CLIP weights are not available offline; clip:<model> is supported where they are installed"),
    _div("k-means", "k-means per ImageNet class on GPU, 1,000 classes, centres concatenated "
         "(VQGAN-LC minibatch_kmeans_per_class.py:81, 86-90; run.sh:6-11)",
         "one seeded Lloyd k-means over all sampled features, 10 iterations (quantizer.lc_kmeans_iters)",
         "CIFAR-10 at this scale; the per-class split needs ImageNet's 1,000 classes"),
    _div("LC codebook size", "N = 100,000 (VQGAN-LC runTrainVQ.sh:19)",
         "N = 100,000 for LC and its ablations; the size grid runs 1,024 / 16,384 / 100,000 (the paper's size "
         "ablation also has 50,000)", "50,000 left out to keep the study within its CPU budget"),
    _div("model width and depth", "ch 128, ch_mult (1,1,2,2,4), 2 res blocks, attention at 16, z_channels 256 "
         "(VQGAN-LC vq-f16.yaml:9-22); ch 128, ch_mult (1,2,2,4), attention at 32 (PQGAN config.yaml:64-76)",
         "ch 16, ch_mult (1,2,4), 1 res block, no attention, z_channels 32 (~0.7M parameters)",
         "2 CPU cores"),
    _div("downsampling factor", "F = 16 (VQGAN-LC vq-f16.yaml); F = 8 (PQGAN F8 config)",
         "F = 4: 8×8 tokens of a 32×32 image", "32-pixel images leave 2×2 tokens at F = 16"),
    _div("training length and batch", "100 epochs of ImageNet, batch 256, lr 1e-4, 5 warm-up epochs, cosine "
         "(VQGAN-LC runTrainVQ.sh:7-11, util/lr_sched.py:10-17; README.md:59 gives lr 5e-4); "
         "1.2M steps, batch 30, lr 4.5e-6 constant (PQGAN config.yaml:28, 61, 110)",
         "800 steps, batch 32, lr 1e-3, 50 warm-up steps, cosine (default profile)",
         "the papers' learning rates are tuned for 10^5–10^6 steps; 800 CPU steps need a larger one"),
    _div("perceptual loss", "LPIPS(VGG) weight 1 (VQGAN-LC training_vqgan.py:262 --rate_p 1; PQGAN loss.py "
         "VQLPIPSWithDiscriminator perceptual_weight=1.0, not overridden in config.yaml:80-86)",
         "off (loss.perceptual_weight = 0)", "VGG through LPIPS on every CPU step costs more than the model"),
    _div("GAN loss", "hinge PatchGAN, 2 layers, adaptive weight × 0.1 from step 50,000 (VQGAN-LC models_vq.py:44-48, "
         "training_vqgan.py:263, runTrainVQ.sh:18); 3 layers, weight 0.8 from step 1 (PQGAN config.yaml:83-85)",
         "off (loss.disc_weight = 0)", "its cost: a discriminator step on every step (PQGAN's GAN starts at step 1), "
         "with LPIPS(VGG) as both papers train, multiplies the step's time several-fold on a CPU "
         "(benchmarks/gan_cost.py → results/benchmarks/gan_cost.csv), which the study's CPU budget cannot pay"),
    _div("random LC codebook dimension", "C = embed_dim (VQGAN-LC models_vq.py:66, 71: the random codebook has the "
         "latent's width)", "C of lc_source (48 for pixel patches); lc_source=random gives C = D′ exactly",
         "keeps the projector of the random arm the same shape as the k-means arm's, as the issue's measurement did"),
    _div("static arm's latent normalisation", "latents l2-normalised when embed_dim = 768 (CLIP features; VQGAN-LC "
         "models_vq.py:269-270)", "not normalised", "pixel-patch features are not unit vectors"),
    _div("MLP projector", "C → 256 → D′ with ReLU (VQGAN-LC models_vq.py:119-123)", "C → C → D′ with GELU",
         "an extra arm here; the recipe's projector is linear as in VQGAN-LC's main runs"),
    _div("Adam epsilon", "1e-7 (VQGAN-LC training_vqgan.py:368, 375)", "1e-8 (torch's default)",
         "not exposed as a config field"),
    _div("precision", "16-bit mixed (PQGAN config.yaml:8)", "float32", "CPU"),
]
