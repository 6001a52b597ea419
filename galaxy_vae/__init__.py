"""galaxy_vae: explore the latent space of galaxy images.

Data flows one way: data -> models -> embed/search -> figures -> pages. Nothing here imports
streamlit except :mod:`galaxy_vae.app`, the cached wrappers the pages use.
"""

__version__ = "0.1.0"
