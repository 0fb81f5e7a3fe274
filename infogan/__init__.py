"""The torch-free core that training, export and the service share: the latent layout and the image helpers.

numpy only, so the service image carries no training stack and cannot disagree with the model about its codes.
"""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it, the service reports it
