"""Plain descriptions of networks: layers, channel groups, removable blocks, FLOPs and parameters."""

from latbench.arch.arch import Arch, ArchBase, ArchError, Block, Group, Layer
from latbench.arch.spec import LayerSpec
from latbench.arch.trace import UnsupportedLayerError, trace

__all__ = ["Arch", "ArchBase", "ArchError", "Block", "Group", "Layer", "LayerSpec", "UnsupportedLayerError", "trace"]
