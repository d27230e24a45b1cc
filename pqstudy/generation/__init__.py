"""Generators on tokens and latents: an autoregressive prior and a latent diffusion (flow-matching) model."""
