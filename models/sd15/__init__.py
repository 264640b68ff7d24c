"""Stable Diffusion 1.5 at its real size: its published architecture with random weights.

config.py holds SD 1.5's published configuration (and a shrunk twin), vocab.py CLIP's real
vocabulary from open-clip-torch's merges; export.py (the `export` extra: torch, diffusers,
transformers, optimum-onnx) builds the model and exports it in optimum's layout.
"""
