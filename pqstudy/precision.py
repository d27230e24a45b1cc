"""Training precision and compilation: bf16 autocast where it is safe, fp32 where it is not, optional torch.compile.

``train.precision=bf16`` runs the model's forward pass and the losses under ``torch.autocast(dtype=bfloat16)``:
convolutions and matmuls in bf16, weights, gradients and the optimiser in fp32. Three places are kept in fp32
(:func:`fp32_region`) (``benchmarks/bf16_quality.py`` measures each; README, "GPU path"):

- ``search``: the nearest-code distances ``‖c‖² − 2x·c``. bf16 keeps 8 mantissa bits, so a value of size s is
  rounded by up to s·2⁻⁹; codes whose distances differ by less than that tie or swap, and the argmin picks another
  code than fp32 would (0.2–6% of positions on the default study's trained runs). Autocast would run that matmul in
  bf16 (``quantizers.base.nearest_code``).
- ``quantizer``: the whole quantiser forward (latent cast to fp32 at its entry): search, loss terms, EMA statistics,
  the lookup projections (``quantizers.base.Quantizer.forward``).
- ``reconstruction``: the reconstruction loss, on fp32 images (``losses.AutoencoderLoss.generator_loss``).

:data:`FP32_GUARDS` switches each off, for the ablation benchmark only; training never changes them.

bf16 is never chosen automatically (there is no ``auto`` precision): on a CPU without native bf16
(:func:`pqstudy.cpu.native_bf16`) it is emulated, 8–17× slower, and :func:`training_autocast` warns. With native
bf16 (AMX) it pays only for wide models: one thread, the default model 0.45 s per step against 0.27 s in fp32, the
same model at 4× the channels 1.33 s against 2.19 s (``benchmarks/train_throughput.py --precisions fp32,bf16``);
and it is a different experiment from its fp32 twin (other codes win near-ties), so a user picks it by name.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from pqstudy.cpu import cpu_model, emulated_bf16

# Where autocast is switched off (see the module docstring). An ablation switch for benchmarks/bf16_quality.py and
# the tests that show the guards matter; set through :func:`guards`, never in training.
FP32_GUARDS = {"search": True, "quantizer": True, "reconstruction": True}
LOW_PRECISION = (torch.bfloat16, torch.float16)


def autocast(device, precision: str = "fp32", field: str = "train.precision"):
    """The autocast context for ``precision`` (the config's ``field``) on ``device``: bf16 autocast for ``"bf16"``,
    a disabled one (no-op) for ``"fp32"``."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"{field}={precision!r}: choose fp32 or bf16")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def training_autocast(device, precision: str = "fp32", field: str = "train.precision"):
    """A factory of :func:`autocast` contexts for a training loop (``with amp(): ...``); warns once where bf16 is
    emulated. Allowed there, not refused: the numbers are right (the guards keep fp32 where it matters), only slow,
    and the user asked for it by name (``field``: the tokenizer's ``train.precision`` or a generator's
    ``gen.precision``)."""
    if precision == "bf16" and emulated_bf16(device):
        warnings.warn(f"{field}='bf16' on {cpu_model()}: no native bf16 (AVX512-BF16/AMX), so it is "
                      "emulated, 8-17x slower than fp32; use fp32 on this machine", RuntimeWarning, stacklevel=2)
    autocast(device, precision, field)  # checks the name before the loop starts
    return lambda: autocast(device, precision, field)


@contextlib.contextmanager
def fp32_region(name: str, device_type: str):
    """Autocast off inside (ops run in their inputs' dtype), unless ``FP32_GUARDS[name]`` is off; yields whether
    the guard is on. Callers cast bf16/fp16 inputs to fp32 with :func:`to_fp32` inside."""
    if not FP32_GUARDS[name]:
        yield False
        return
    with torch.autocast(device_type, enabled=False):
        yield True


def to_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as fp32 if it is bf16/fp16 (from an autocast region); fp32 and fp64 tensors as they are."""
    return x.float() if x.dtype in LOW_PRECISION else x


@contextlib.contextmanager
def guards(**enabled: bool):
    """Set some :data:`FP32_GUARDS` (``guards(search=False)``) for the duration; for ablations and tests."""
    unknown = sorted(set(enabled) - set(FP32_GUARDS))
    if unknown:
        raise ValueError(f"guards: unknown guard(s) {unknown}; choose from {sorted(FP32_GUARDS)}")
    saved = dict(FP32_GUARDS)
    FP32_GUARDS.update(enabled)
    try:
        yield
    finally:
        FP32_GUARDS.clear()
        FP32_GUARDS.update(saved)


def maybe_compile(model: torch.nn.Module, enabled: bool = False, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile(model)`` when ``enabled``, else ``model`` itself. The compiled module shares the parameters;
    save and load the state dict of ``model`` (a compiled module's keys carry an ``_orig_mod.`` prefix).

    Compiling turns off AOTAutograd's donated buffers (process-wide: the setting is read when the graph compiles, at
    the first call, not here): a backward with donated buffers refuses ``retain_graph=True``, which the GAN phase's
    adaptive weight needs (two ``autograd.grad`` calls at the decoder's last layer before the backward). With them on,
    the first GAN step failed, on a CPU and on an H200 (``benchmarks/gpu_check.py``); the cost is some memory.
    ``backend``: torch.compile's (the tests use ``aot_eager``, which has the same AOTAutograd backward, in seconds)."""
    if not enabled:
        return model
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False
    return torch.compile(model, backend=backend)
