"""SimCLR: contrastive learning of visual representations (Chen et al., ICML 2020).

``simclr.pretrain(data, out, ...)`` trains as the ``simclr pretrain`` command does;
``simclr.load_encoder(run)`` gives the trained encoder, to embed images from Python; ``simclr.evaluate(run,
data, "linear")`` evaluates it as ``simclr eval`` does; ``simclr.embed(run, data)`` and
``simclr.load_index(f)`` give a collection to ``search`` by similarity; ``simclr.import_weights(file, out)``
makes a checkpoint of torchvision-style ResNet weights, ``simclr.export_weights(run, out)`` writes one's f for
torchvision, ``simclr.ablate(study, data, out)`` runs one of the paper's ablations (see ``simclr.api``: each
command calls its function there)."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
"""The one place of the version: setuptools reads it (pyproject.toml), `simclr --version` prints it."""
__all__ = ["Encoder", "__version__", "ablate", "embed", "evaluate", "export_weights", "import_weights",
           "load_encoder", "load_index", "planned_config", "pretrain", "pretrain_config"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import simclr` (and `simclr --help`) does not load torch.
    if name in __all__ and name != "__version__":
        from simclr import api

        return getattr(api, name)
    raise AttributeError(f"module 'simclr' has no attribute {name!r}")
