"""gankit: train, compare and sample image GANs on a folder of images."""

__version__ = "0.1.0"
