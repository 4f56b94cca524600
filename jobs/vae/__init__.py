"""The `vae` workload: β-VAE on faces (CelebA, an image folder, an .npy array) or procedural sprites.

`workload.BetaVAE` implements `jobkit.protocol.Workload`; `sprites` generates the dSprites-style data
with known factors; `mig.mutual_info_gap` scores disentanglement.
"""
