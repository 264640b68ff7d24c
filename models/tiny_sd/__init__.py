"""tiny-sd: hexfleet's own Stable-Diffusion-shaped text-to-image model and its synthetic world.

Torch is needed only by model.py, train.py and export.py (the `train` extra).
"""
