"""Generators trained on a tokenizer's tokens or latents (issue 13), one module each.

- ``ar``: a class-conditional GPT over token grids (LlamaGen c2i); factorised or flat heads for PQ's M sub-indices.
"""
