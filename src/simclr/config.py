"""Run configuration: frozen dataclasses whose defaults are the paper's values.

Each section validates its own values (``ValueError`` naming the key). Building a config from YAML files,
``--set`` overrides and command-line options, and writing it back, is :mod:`simclr.config_io`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from simclr.data.augment_spec import AugmentSpec
from simclr.losses.alternatives import LOSSES
from simclr.models.heads import HeadSpec
from simclr.models.resnet import INPUT_NORMS, EncoderSpec

OPTIMIZERS = ("lars", "sgd", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "off", "default", "cudagraphs")
"""torch.compile of the training step: see :mod:`simclr.training.step`."""
MAX_WORKERS = 128
"""The most DataLoader worker processes a command starts (each is a process with its own copy of the
reader)."""


def check_range(key: str, value: float, low: float, high: float, *, above: bool = False) -> None:
    """ValueError unless ``low <= value <= high`` (``low < value`` with ``above``): the bounds keep values
    that are finite but absurd (1e308 epochs, a temperature of 1e308) out of the arithmetic they would
    overflow."""
    if not ((value > low if above else value >= low) and value <= high):
        raise ValueError(f"{key} must be {'>' if above else '>='} {low:g} and <= {high:g}, got {value:g}")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are fed.

    Attributes:
        spec: ``cifar10``, ``digits``, an image folder or a ``.tar``/``.tar.gz``/``.zip`` archive.
        root: folder holding ``cifar-10-batches-py`` ('' = ``$SIMCLR_DATA`` or ``~/.cache/simclr/data``).
        cache_dir: where archives are extracted ('' = ``$SIMCLR_CACHE`` or ``~/.cache/simclr``).
        holdout: fraction held out as the test split of a folder without ``train/`` and ``test/``.
        image_size: side images are decoded and evaluated at; 0 = the images' own side for small images held
            in memory (32 for CIFAR-10), 224 otherwise.
        view_size: side of the augmented training views (the crop is resized to it); 0 = ``image_size``.
            Training on smaller views and evaluating at ``image_size`` trades little accuracy for a large
            speed-up on CPUs (and test-time resolution above the training one helps, Touvron et al. 2019).
        in_memory: ``auto`` keeps small images (side <= 64) decoded in one uint8 tensor on the training
            device and augments whole batches there; ``true``/``false`` force it.
        workers: DataLoader worker processes for the file path.
        decode_cache: keep in-memory datasets decoded in ``cache_dir/decoded`` (a memory-mapped uint8 file
            keyed by the dataset's content), so later runs skip decoding.
        eval_crop: the part of the shorter side that evaluation keeps: images are resized so that their
            shorter side is ``image_size / eval_crop``, then centre-cropped to ``image_size``. 1.0 = the whole
            shorter side (the paper's transfer protocol; CIFAR); 0.875 = the reference code's ImageNet
            evaluation (resize 256, crop 224). Training views are not affected, nor are the images an
            evaluation trains a network on with random crops (fine-tuning), which keep the whole shorter side.
    """

    spec: str = ""
    root: str = ""
    cache_dir: str = ""
    holdout: float = 0.0
    image_size: int = 0
    view_size: int = 0
    in_memory: str = "auto"
    workers: int = 2
    decode_cache: bool = True
    eval_crop: float = 1.0

    def validate(self) -> None:
        if not 0.0 < self.eval_crop <= 1.0:
            raise ValueError(f"data.eval_crop must be in (0, 1], got {self.eval_crop}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"data.holdout must be in [0, 1), got {self.holdout}")
        if self.image_size != 0 and self.image_size < 8:
            raise ValueError(f"data.image_size must be 0 (auto) or >= 8, got {self.image_size}")
        if self.view_size != 0 and self.view_size < 8:
            raise ValueError(f"data.view_size must be 0 (= image_size) or >= 8, got {self.view_size}")
        if self.in_memory not in ("auto", "true", "false"):
            raise ValueError(f"data.in_memory must be auto, true or false, got {self.in_memory!r}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"data.workers must be from 0 to {MAX_WORKERS}, got {self.workers}")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder f and projection head g (Sections 2.1, 4.2; Appendix B.9 for the CIFAR stem).

    Attributes:
        arch: ``resnet18`` ... ``resnet152``, ``resnet50x2``, ``resnet50x4`` (simclr's), ``timm:NAME`` (any
            timm model; the ``timm`` extra) or ``torchvision:NAME`` (any torchvision classification model): h
            is the network's pooled features.
        width: channel multiplier of every layer (simclr's ResNets only).
        cifar_stem: 3x3 stride-1 stem without max-pool; ``None`` (YAML ``auto``) = on for images <= 64 px. For
            timm and torchvision networks the small-image option: a vision transformer gets patches of side/8,
            a convolutional network a stride-1 3x3 first convolution and no stem max-pool.
        head: the projection head.
        input_norm: ``none`` (SimCLR's: pixels in [0, 1] go in as they are) or ``imagenet`` (f first subtracts
            ImageNet's channel means and divides by their deviations, as torchvision's supervised weights
            expect; set by ``simclr import --input-norm imagenet``).
        init: a checkpoint (run folder or file: a run's, ``simclr export --format simclr``'s or ``simclr
            import``'s) whose f and g start pretraining instead of a random initialisation, e.g. to continue
            from ImageNet weights on your own images; its model settings replace the others. ``""`` = random.
    """

    arch: str = "resnet50"
    width: float = 1.0
    cifar_stem: bool | None = None
    head: HeadSpec = field(default_factory=HeadSpec)
    input_norm: str = "none"
    init: str = ""

    def validate(self) -> None:
        try:
            EncoderSpec(self.arch, self.width).validate()
        except ValueError as exc:
            what = "model.width" if str(exc).startswith("width") else "model.arch"
            raise ValueError(f"{what}: {exc}") from None
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"model.input_norm must be one of {', '.join(INPUT_NORMS)}, "
                             f"got {self.input_norm!r}")
        self.head.validate()


@dataclass(frozen=True)
class LossConfig:
    """The contrastive loss (Section 2.1; Table 2 and Table 4 for the alternatives).

    Attributes:
        name: ``nt_xent`` (SimCLR's), ``nt_logistic`` or ``margin_triplet`` (the paper's loss ablation).
        temperature: NT-Xent and NT-Logistic temperature; the paper's default for large batches is 0.1 (Table
            5).
        margin: margin of the triplet loss.
        normalize: l2-normalise z (cosine similarity).
        semi_hard: semi-hard negative mining (NT-Logistic and margin triplet only).
        scale: the loss is multiplied by this for the gradient (the logged loss stays the paper's average over
            the 2N views): 2 follows the reference code, whose loss is the sum of both directions' means
            (``loss_a + loss_b`` in ``objective.py``), twice the paper's average; the paper's learning rates
            and weight decay were set with it. Under LARS this is not a change of learning rate alone: it
            halves weight decay's share of each adapted step and doubles the steps of batch-norm parameters
            and biases.
    """

    name: str = "nt_xent"
    temperature: float = 0.1
    margin: float = 1.0
    normalize: bool = True
    semi_hard: bool = False
    scale: float = 2.0

    def validate(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"loss.name must be one of {', '.join(LOSSES)}, got {self.name!r}")
        check_range("loss.temperature", self.temperature, 0, 100, above=True)
        check_range("loss.margin", self.margin, 0, 100, above=True)
        check_range("loss.scale", self.scale, 0, 1e4, above=True)
        if self.semi_hard and self.name == "nt_xent":
            raise ValueError("loss.semi_hard applies to nt_logistic and margin_triplet, not nt_xent")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (Section 3, Appendix B.1): LARS, lr = 0.3 x batch/256, wd 1e-6, 10 warm-up
    epochs.

    Attributes:
        name: ``lars``, ``sgd`` (momentum) or ``adamw``.
        base_lr: scaled by ``lr_scaling``: ``linear`` = base x batch/256, ``sqrt`` = base x sqrt(batch),
            ``none`` = base as is.
        warmup_epochs: linear warm-up length, then cosine decay to ``final_lr``.
    """

    name: str = "lars"
    base_lr: float = 0.3
    lr_scaling: str = "linear"
    momentum: float = 0.9
    weight_decay: float = 1e-6
    trust_coefficient: float = 0.001
    warmup_epochs: float = 10.0
    final_lr: float = 0.0

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"optim.lr_scaling must be one of {', '.join(LR_SCALINGS)}, "
                             f"got {self.lr_scaling!r}")
        check_range("optim.base_lr", self.base_lr, 0, 1e4, above=True)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        check_range("optim.weight_decay", self.weight_decay, 0, 10)
        check_range("optim.warmup_epochs", self.warmup_epochs, 0, 1e5)
        check_range("optim.final_lr", self.final_lr, 0, 1e4)
        check_range("optim.trust_coefficient", self.trust_coefficient, 0, 1e3, above=True)


@dataclass(frozen=True)
class TrainConfig:
    """The training run (Section 3: batch 4096, 100 epochs).

    Attributes:
        epochs: passes over the data; fractions are allowed (0.5 = half the steps of one epoch, rounded).
        time_budget: minutes; > 0 fits the whole schedule (warm-up and cosine) to this wall time.
        precision: ``auto`` = bf16 autocast where the hardware runs it fast (CUDA with bf16, CPUs with
            AVX-512 bf16 or AMX), else fp32.
        compile: ``torch.compile`` the forward and loss: ``off``, ``default`` (Inductor), ``cudagraphs``
            (Inductor plus CUDA graphs, CUDA only) or ``auto`` (``cudagraphs`` on CUDA, ``off`` on CPU).
        sync_bn: under torchrun (more than one process), global batch norm: statistics over every rank's
            views.
        gather_negatives: under torchrun, every view is contrasted with the views of all ranks (2N - 2
            negatives for a global batch of N) instead of its own rank's only.
        grad_cache_chunk: views per chunk for memory-bounded gradient caching (0 = off; see
            ``simclr.training.gradcache``): activation memory of one chunk, for one extra forward pass.
        dist_timeout: minutes a collective may wait for a peer before the job fails (instead of hanging).
        log_every: steps between metrics.jsonl lines (the only host-device synchronisations).
        checkpoint_every: epochs between kept checkpoints (``epoch_NNNN.pt``).
        save_minutes: ``last.pt`` (what ``--resume`` continues) is rewritten at the first epoch end after this
            many minutes (0 = every epoch), at the end, and on Ctrl-C.
        knn_every: epochs between kNN monitor evaluations on the labelled test split (0 = off).
        diagnostics_every: epochs between measurements of alignment and uniformity of z and the effective rank
            of h on a fixed batch of views (0 = off); a collapsing rank prints a warning.
    """

    epochs: float = 100.0
    batch_size: int = 4096
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: str = "auto"
    sync_bn: bool = True
    gather_negatives: bool = True
    grad_cache_chunk: int = 0
    dist_timeout: float = 10.0
    time_budget: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 0
    save_minutes: float = 2.0
    knn_every: int = 0
    diagnostics_every: int = 1
    knn_k: int = 200
    knn_temperature: float = 0.1

    def validate(self) -> None:
        check_range("train.epochs", self.epochs, 0, 1e5, above=True)
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2, got {self.batch_size}")
        if self.device not in DEVICES:
            raise ValueError(f"train.device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.grad_cache_chunk < 0 or self.grad_cache_chunk == 1:
            raise ValueError(f"train.grad_cache_chunk must be 0 (off) or >= 2 views, "
                             f"got {self.grad_cache_chunk}")
        check_range("train.dist_timeout (minutes)", self.dist_timeout, 0, 1e5, above=True)
        check_range("train.time_budget (minutes)", self.time_budget, 0, 1e6)
        for name in ("log_every", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "knn_every", "save_minutes", "diagnostics_every"):
            check_range(f"train.{name}", getattr(self, name), 0, 1e6)
        check_range("train.knn_temperature", self.knn_temperature, 0, 100, above=True)


@dataclass(frozen=True)
class Config:
    """Everything a pretraining run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        for section in (self.data, self.model, self.loss, self.optim, self.train):
            section.validate()
        # augment.size is replaced by the resolved image size before use; check the rest now.
        dataclasses.replace(self.augment, size=max(self.augment.size, 8)).validate()
