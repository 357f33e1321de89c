"""gankit: train, compare and sample image GANs on a folder of images."""

import os

__version__ = "0.1.0"

# PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages when this is set (read once, at
# its first allocation, so it is set before gankit imports torch). Inception's maps at 299 px (up to 280 MB a batch)
# otherwise take over a million page faults per batch: Inception runs 1.27x faster with it on a 2-core CPU, training
# the same (benchmarks/inception_throughput.py, README "FID and KID"). THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
