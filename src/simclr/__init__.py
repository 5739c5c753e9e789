"""SimCLR: contrastive learning of visual representations (Chen et al., ICML 2020)."""

__version__ = "0.1.0"
