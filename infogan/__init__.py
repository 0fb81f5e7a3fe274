"""The torch-free core that training, export and the service share: the latent layout and the image helpers.

numpy only, so the service image carries no training stack and cannot disagree with the model about its codes.
"""
