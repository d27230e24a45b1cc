"""Generators trained on a tokenizer's tokens or latents, one concern per module.

- ``ar``: a class-conditional GPT over token grids (LlamaGen c2i); factorised or flat heads for PQ's M sub-indices.
- ``diffusion``: a small DiT on latents trained with flow matching (SiT's linear interpolant), Euler/Heun sampling.
- ``config``: ``GenConfig`` (section ``gen``) and ``GenRunConfig`` (a generator on one tokenizer run), run ids.
- ``draw``: random draws from a generator on another device than the tensors (a CPU generator for a GPU model).
- ``codes``: a tokenizer's codes of a split (indices or latents), extracted once into its run directory.
- ``train``: the flat training loop on saved codes, bitwise resumable; ``evaluate``: NLL, samples, cost, metrics;
  ``run``: both, writing ``metrics.json`` (what ``pqstudy generate`` and ``notebooks/generation.ipynb`` call).
"""
