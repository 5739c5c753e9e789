"""Where an evaluation's data comes from and where it runs: the data settings given for it (over the
checkpoint's), the device, the batch size and progress bars."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simclr.config import MAX_WORKERS, Config, DataConfig
from simclr.errors import InputError, is_number, is_whole


@dataclass(frozen=True)
class EvalSetup:
    """Where evaluation data comes from and where it runs.

    Attributes:
        data: the data settings of the evaluation: ``spec`` (the dataset) and those in ``given``; the
            other fields are :class:`DataConfig`'s defaults, standing for the checkpoint's (``image_size`` 0,
            ``root`` and ``cache_dir`` empty). ``workers`` are the processes this evaluation reads images with
            (the run's own decoding keeps the run's ``data.workers``).
        given: the fields of ``data`` that replace the checkpoint's.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per batch.
        progress: show progress bars.
    """

    data: DataConfig = field(default_factory=DataConfig)
    given: frozenset[str] = frozenset({"spec"})
    device: str = "auto"
    batch_size: int = 256
    progress: bool = True

    @classmethod
    def of(cls, spec: str = "", *, device: str = "auto", batch_size: int = 256, progress: bool = True,
           **data: Any) -> EvalSetup:
        """An evaluation of the dataset ``spec`` with the data settings ``data`` (:class:`DataConfig`'s keys;
        a setting left out or None is the checkpoint's)."""
        chosen = {name: value for name, value in data.items() if value is not None}
        return cls(DataConfig(spec=spec, **chosen), frozenset({"spec", *chosen}), device, batch_size,
                   progress)

    def chosen(self, name: str) -> Any:
        """The value given for the data setting ``name``, or None: the checkpoint's."""
        return getattr(self.data, name) if name in self.given else None

    def with_data(self, **data: Any) -> EvalSetup:
        """This setup with other data settings (None: the checkpoint's)."""
        kept = {name: getattr(self.data, name) for name in self.given - {"spec"} - data.keys()}
        return EvalSetup.of(self.data.spec, device=self.device, batch_size=self.batch_size,
                            progress=self.progress, **kept, **data)

    def data_config(self, run: DataConfig) -> DataConfig:
        """The checkpoint's data settings ``run`` with those given here (but ``workers``)."""
        given = {name: getattr(self.data, name) for name in self.given - {"workers"}}
        return dataclasses.replace(run, **given)


def eval_config(config: Config, setup: EvalSetup) -> Config:
    """A checkpoint's ``config`` with the data settings of ``setup``."""
    return dataclasses.replace(config, data=setup.data_config(config.data))


def check_sizes(image_size: object, eval_crop: object) -> None:
    """InputError unless ``image_size`` is 0 or a whole number >= 8 and ``eval_crop`` None or a number in
    (0, 1]."""
    if not is_whole(image_size) or 0 < image_size < 8 or image_size < 0:
        raise InputError(f"image_size must be 0 (the run's) or a whole number >= 8, got {image_size!r}")
    if eval_crop is not None and not (is_number(eval_crop) and 0 < eval_crop <= 1):
        raise InputError(f"eval_crop must be in (0, 1], got {eval_crop!r}")


def eval_setup(data: str | Path, image_size: int, device: str, batch_size: int, workers: int, progress: bool,
               data_root: str = "", cache_dir: str = "", holdout: float | None = None,
               eval_crop: float | None = None, in_memory: str | bool | None = None) -> EvalSetup:
    """An :class:`EvalSetup` of values given from Python or the command line, checked (InputError naming the
    value). ``image_size`` 0, ``data_root`` and ``cache_dir`` empty and the Nones are the checkpoint's."""
    if data and not isinstance(data, (str, os.PathLike)):
        raise InputError(f"data must be a dataset name or path, got {data!r}")
    if not is_whole(workers) or not 0 <= workers <= MAX_WORKERS:
        raise InputError(f"workers must be a whole number from 0 to {MAX_WORKERS}, got {workers!r}")
    if isinstance(in_memory, bool):
        in_memory = str(in_memory).lower()
    if in_memory is not None and in_memory not in ("auto", "true", "false"):
        raise InputError(f"in_memory must be auto, true or false, got {in_memory!r}")
    if not is_whole(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    check_sizes(image_size, eval_crop)
    if holdout is not None and (not is_number(holdout) or not 0 <= holdout < 1):
        raise InputError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    return EvalSetup.of(os.path.expanduser(str(data)) if data else "", device=device, batch_size=batch_size,
                        progress=progress, root=data_root or None, cache_dir=cache_dir or None,
                        workers=workers, image_size=image_size or None, holdout=holdout, eval_crop=eval_crop,
                        in_memory=in_memory)
