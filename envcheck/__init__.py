"""envcheck: is this machine ready for large-model work with PyTorch?"""

__version__ = "0.1.0"
