"""On a GPU: a ResNet with periodic evaluation loaded five ways, the GPU's idle time measured.

The GPU's idle time, the host's wait at every switch between training and evaluation, and
what pinned batches and non-blocking copies do, measured in one run.

A real convolutional network (a ResNet of four basic blocks written below, channels-last,
bf16 autocast on CUDA, SGD with momentum) trained on worker-bound synthetic images: sample
``i`` of a set is a random RGB image drawn from a generator seeded by ``(set, i)`` (the same
image every time), "decoded" for ``--sample-ms`` of CPU (``burn_cpu``, as the ``bench``
command's datasets) and augmented (a crop and a flip chosen by ``(set, i)``). Every
``--eval-every`` updates an evaluation runs over two sets (forward and loss of every batch).
The same run five ways, in alternating rounds:

- ``non-persistent``: a hand-written loop over one ``DataLoader`` per dataset, PyTorch's
  default: a new pool for every epoch and every evaluation pass of each set;
- ``persistent``: the same loop, ``persistent_workers=True``: a pool per loader;
- ``interleaved``: the same steps over ``InterleavedSampler(...).get_data_loader(tagged=True,
  ...)``: one pool for training and every evaluation;
- ``lightning``: a ``LightningModule`` with the same network and steps and an ordinary
  ``LightningDataModule`` with the loaders of ``non-persistent``,
  ``Trainer(val_check_interval=N, check_val_every_n_epoch=None, num_sanity_val_steps=0)``;
- ``lightning wrapped``: the same module and DataModule in ``InterleavedDataModule``.

Measured per run: wall time, peak PSS summed over the process tree, worker processes started,
CPU time (``side_by_side.py``'s ``FitMeter``), and per step: a step runs from the moment the
loop holds the batch (on the host) to the moment its work is queued (the copy to the device,
then forward, backward and optimizer step, or forward and loss). On CUDA two events recorded
at its ends give its time on the GPU; their sum is the GPU's busy time and ``1 - busy / wall``
its idle share. Without CUDA the same code runs on the CPU and ``time.perf_counter()`` around
each step stands in for the events. A switch wait is the host's time from the end of the last
step of one phase to the start of the first step of the next: waiting for the first batch of
an evaluation set (evaluation start, after training or after the other set) or of training
again (training restart); with Lightning it includes Lightning's own work between the phases.
Every run must see the same samples in the same order, or the script fails; the check line
prints a CRC-32 of the sample indices per source. On the CPU the final weights must also be
bit-identical (cuDNN and bf16 do not promise that on a GPU).

Without CUDA the small configuration is the default (``--small`` on a GPU): tiny images and
network, one round, no pinning. On CUDA the script prints the device's name and the versions
of torch, CUDA and Lightning; ``--pin-memory`` and ``--non-blocking`` are on by default there.
``--start-method fork`` or ``forkserver`` (the default, Python 3.14's on Linux); ``fork``
after CUDA is initialized is safe for these workers, which never touch CUDA. The forkserver
is started before the first run (it outlives them all); its workers are its children, so
their CPU time counts in "others busy", not in the tree's CPU time (``measure.py``), and each
imports this script (torch included) when it starts, as a spawned worker does.

Usage: python benchmarks/gpu_side_by_side.py [--small] [--rounds 3] [--updates 512]
       [--eval-every 128] [--workers 8] [--sample-ms 1] [--start-method forkserver]
       [--image-size 64] [--width 32] [--no-pin-memory] [--no-non-blocking]
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from multiprocessing.context import BaseContext
from operator import attrgetter
from typing import Any, NamedTuple

import side_by_side as shared
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.bench.measure import StartupCounter
from interleaved_sampler.bench.scenario import burn_cpu

Batch = Sequence[torch.Tensor]  # (tags [source, index] per sample, images, labels)
PAD = 4  # a "decoded" image is this much larger than the crop the augmentation takes


@dataclass(frozen=True)
class Setting(shared.Setting):
    """The benchmarked run (``eval_every``: an evaluation of both sets every this many
    updates), its images, network and host-to-device copies.

    Args:
        image_size: the images' height and width.
        width: channels of the ResNet's first block (doubled by each of the next three).
        classes: classes of the labels.
        pin_memory: ``pin_memory=True`` on every loader.
        non_blocking: copy batches to the device with ``non_blocking=True``.
    """

    image_size: int = 64
    width: int = 32
    classes: int = 10
    pin_memory: bool = False
    non_blocking: bool = False


def settings(cuda: bool) -> tuple[Setting, Setting]:
    """The full configuration (a GPU run) and the small one; pinning and non-blocking copies
    where there is CUDA."""
    copies = {"pin_memory": cuda, "non_blocking": cuda, "start_method": "forkserver"}
    full = Setting(
        rounds=3,
        updates=512,
        eval_every=128,
        workers=8,
        sample_ms=1.0,
        train_size=16384,
        eval_sizes=(2048, 1024),
        batch_size=128,
        eval_batch_size=256,
        **copies,
    )
    small = Setting(image_size=16, width=8, **{**shared.QUICK_SIZES, **copies})
    return full, small


# --- the data and the network -----------------------------------------------------------


class Images(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Item ``i`` is ``(tensor([source, i]), a 3 x size x size image, its label)``, the same
    for the same ``(source, i)`` every time; loading it costs ``sample_ms`` of CPU (decoding)
    and a crop and a flip (augmenting).

    Args:
        source: the id of this set (0 = training), returned with every item.
        size: number of items.
        setting: the cost, the image size and the classes.
    """

    def __init__(self, source: int, size: int, setting: Setting) -> None:
        self.source, self.size = source, size
        self.load_s, self.pixels = setting.sample_ms / 1000, setting.image_size
        self.classes = setting.classes

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.source * 2**32 + index)
        side = self.pixels + PAD
        decoded = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=generator)
        burn_cpu(self.load_s)
        top, left = torch.randint(0, PAD + 1, (2,), generator=generator).tolist()
        image = decoded[:, top : top + self.pixels, left : left + self.pixels].float() / 255
        if index % 2:
            image = image.flip(-1)
        return torch.tensor([self.source, index]), image, torch.tensor(index % self.classes)


@dataclass(frozen=True)
class ImageSets:
    """The training set and the evaluation sets of a setting."""

    train: Images
    evals: tuple[Images, ...]

    @classmethod
    def of(cls, setting: Setting) -> ImageSets:
        evals = (Images(i + 1, n, setting) for i, n in enumerate(setting.eval_sizes))
        return cls(Images(0, setting.train_size, setting), tuple(evals))


class Block(torch.nn.Module):
    """A ResNet basic block: two 3x3 convolutions with batch norm, plus the shortcut (a
    strided 1x1 convolution where the shape changes).

    Args:
        inputs: input channels.
        outputs: output channels.
        stride: the first convolution's stride.
    """

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False),
            torch.nn.BatchNorm2d(outputs),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False),
            torch.nn.BatchNorm2d(outputs),
        )
        self.shortcut: torch.nn.Module = torch.nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = torch.nn.Sequential(
                torch.nn.Conv2d(inputs, outputs, 1, stride, bias=False),
                torch.nn.BatchNorm2d(outputs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet(setting: Setting) -> torch.nn.Module:
    """The benchmarked network, channels-last, the same initial weights every time: a 3x3
    stem, four basic blocks (``width`` to ``8 * width`` channels), pooling, a linear head."""
    torch.manual_seed(0)
    width = setting.width
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, 1, 1, bias=False),
        torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(inplace=True),
        Block(width, width, 1),
        Block(width, 2 * width, 2),
        Block(2 * width, 4 * width, 2),
        Block(4 * width, 8 * width, 2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * width, setting.classes),
    ).to(memory_format=torch.channels_last)


def loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross entropy of ``model`` on a batch already on its device (made channels-last
    there: a collated batch is contiguous)."""
    logits = model(images.contiguous(memory_format=torch.channels_last))
    return torch.nn.functional.cross_entropy(logits, labels)


def optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of every variant."""
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def loader_arguments(
    setting: Setting, counter: StartupCounter | None, persistent: bool
) -> dict[str, Any]:
    """The ``DataLoader`` arguments of every loader, the interleaved one included."""
    arguments: dict[str, Any] = {"pin_memory": setting.pin_memory}
    if setting.workers:
        arguments |= {
            "num_workers": setting.workers,
            "multiprocessing_context": setting.start_method,
            "worker_init_fn": counter,
            "persistent_workers": persistent,
        }
    return arguments


def train_loader(data: ImageSets, setting: Setting, arguments: dict[str, Any]) -> DataLoader[Any]:
    """The plain train loader: ``SeededRandomSampler``, the last partial batch dropped."""
    sampler = SeededRandomSampler(data.train, seed=0)
    return DataLoader(data.train, setting.batch_size, sampler=sampler, drop_last=True, **arguments)


def eval_loaders(
    data: ImageSets, setting: Setting, arguments: dict[str, Any]
) -> list[DataLoader[Any]]:
    """The plain evaluation loaders, one per set."""
    return [DataLoader(each, setting.eval_batch_size, **arguments) for each in data.evals]


# --- the measurement of every step ------------------------------------------------------


class Switch(NamedTuple):
    """A switch between phases: to training again (else to an evaluation set), and how
    long the host waited."""

    to_training: bool
    wait_s: float


class StepClock:
    """Times every step of a run (see the module docstring) and the host's wait at every
    phase switch, and records the samples of each batch in ``seen``.

    Args:
        seen: records the phase and the sample indices of every batch.
        device: where the steps run; CUDA events time them there, else ``perf_counter``.
    """

    def __init__(self, seen: shared.Seen, device: torch.device) -> None:
        self.seen, self.cuda = seen, device.type == "cuda"
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.host_busy_s = self.began = self.ended = 0.0
        self.phase: str | None = None
        self.switches: list[Switch] = []

    def start(self, phase: str, tags: torch.Tensor) -> None:
        """A step of ``phase`` (``"train"``, ``"val0"``, ...) on the batch of ``tags`` (its
        sample indices in column 1, on the host) begins."""
        self.seen.add(phase, tags[:, 1])
        self.began = time.perf_counter()
        if self.phase is not None and phase != self.phase:
            self.switches.append(Switch(phase == "train", self.began - self.ended))
        self.phase = phase
        if self.cuda:
            self.events.append(
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            )
            self.events[-1][0].record()

    def end(self) -> None:
        """The step's work is queued."""
        if self.cuda:
            self.events[-1][1].record()
        self.ended = time.perf_counter()
        self.host_busy_s += self.ended - self.began

    def busy_s(self) -> float:
        """The steps' time on the GPU (waits for it), or on the host without CUDA."""
        if not self.cuda:
            return self.host_busy_s
        torch.cuda.synchronize()
        return sum(start.elapsed_time(end) for start, end in self.events) / 1000


class Steps:
    """The training loops' steps: the network and its optimizer on ``device``, every step
    timed by ``clock``.

    Args:
        setting: the network and the copies (``non_blocking``).
        device: where the network runs (bf16 autocast on CUDA).
        clock: times the steps.
    """

    def __init__(self, setting: Setting, device: torch.device, clock: StepClock) -> None:
        self.model = resnet(setting).to(device)
        self.optimizer = optimizer(self.model)
        self.device, self.non_blocking, self.clock = device, setting.non_blocking, clock

    def autocast(self) -> AbstractContextManager[Any]:
        """bf16 autocast on CUDA, nothing on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def on_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of a batch, copied to the device."""
        _tags, images, labels = batch
        return (
            images.to(self.device, non_blocking=self.non_blocking),
            labels.to(self.device, non_blocking=self.non_blocking),
        )

    def train(self, batch: Batch) -> None:
        """One training step."""
        self.clock.start("train", batch[0])
        self.model.train()
        images, labels = self.on_device(batch)
        with self.autocast():
            value = loss(self.model, images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        self.optimizer.step()
        self.clock.end()

    def evaluate(self, phase: str, batch: Batch) -> None:
        """One evaluation step on a batch of ``phase`` (``"val0"``, ...)."""
        self.clock.start(phase, batch[0])
        self.model.eval()
        images, labels = self.on_device(batch)
        with torch.inference_mode(), self.autocast():
            loss(self.model, images, labels)
        self.clock.end()


# --- the five ways ----------------------------------------------------------------------


@dataclass(frozen=True)
class Variant(shared.Variant):
    """One way to load the run: a hand-written loop or Lightning, over plain loaders
    (``persistent`` workers or not) or over one pool (``one_pool``)."""

    lightning: bool = False


VARIANTS = (
    *shared.main_variants(Variant, "interleaved"),
    Variant("lightning", lightning=True),
    Variant("lightning wrapped", one_pool=True, lightning=True),
)


def fit_plain_loaders(
    setting: Setting, steps: Steps, counter: StartupCounter | None, persistent: bool
) -> None:
    """The loop over one loader per dataset: an evaluation of every set after every
    ``eval_every`` updates, ``set_epoch`` at every epoch."""
    data, arguments = ImageSets.of(setting), loader_arguments(setting, counter, persistent)
    train, evals = train_loader(data, setting, arguments), eval_loaders(data, setting, arguments)
    update = epoch = 0
    while update < setting.updates:
        train.sampler.set_epoch(epoch)
        for batch in train:
            steps.train(batch)
            update += 1
            if update % setting.eval_every == 0:
                for i, loader in enumerate(evals):
                    for each in loader:
                        steps.evaluate(f"val{i}", each)
            if update == setting.updates:
                break
        epoch += 1


def fit_interleaved(setting: Setting, steps: Steps, counter: StartupCounter | None) -> None:
    """The loop over the one tagged loader of the run."""
    data = ImageSets.of(setting)
    callbacks = [
        SamplerIntervalConfig(
            SequentialSampler(each),
            every_n_updates=setting.eval_every,
            batch_size=setting.eval_batch_size,
            name=f"val{i}",
        )
        for i, each in enumerate(data.evals)
    ]
    sampler = InterleavedSampler(
        SeededRandomSampler(data.train, seed=0),
        InterleavedSamplerConfig(batch_size=setting.batch_size, max_updates=setting.updates),
        callback_samplers=callbacks,
    )
    arguments = loader_arguments(setting, counter, persistent=False)
    for b in sampler.get_data_loader(tagged=True, **arguments):
        if b.source == "train":
            steps.train(b.data)
        else:
            steps.evaluate(b.source, b.data)


def fit_loop(
    variant: Variant,
    setting: Setting,
    device: torch.device,
    clock: StepClock,
    counter: StartupCounter | None,
) -> torch.nn.Module:
    """Run a hand-written loop variant; return the trained network."""
    steps = Steps(setting, device, clock)
    if variant.one_pool:
        fit_interleaved(setting, steps, counter)
    else:
        fit_plain_loaders(setting, steps, counter, variant.persistent)
    return steps.model


# A worker started with spawn or forkserver imports this script again as "__mp_main__"; it
# needs nothing of Lightning, so only the parent imports it (as lightning_side_by_side.py).
if __name__ != "__mp_main__":
    import pytorch_lightning as pl
    from lightning_side_by_side import quiet_lightning

    from interleaved_sampler.integrations.lightning import InterleavedDataModule

    class LitResNet(pl.LightningModule):
        """The loops' network, loss and optimizer; ``clock`` ends every step (the
        DataModule starts it).

        Args:
            setting: the network.
            clock: times the steps.
        """

        def __init__(self, setting: Setting, clock: StepClock) -> None:
            super().__init__()
            self.model, self.clock = resnet(setting), clock

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            _tags, images, labels = batch
            return loss(self.model, images, labels)

        def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
            self.clock.end()

        def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
            _tags, images, labels = batch
            loss(self.model, images, labels)

        def on_validation_batch_end(
            self, outputs: Any, batch: Batch, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self.clock.end()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer(self.model)

    class ImageData(pl.LightningDataModule):
        """An ordinary DataModule with the loaders of ``non-persistent``; ``clock`` starts
        every step when Lightning holds the batch, before its transfer to the device.

        The hook is the DataModule's, not the module's: ``InterleavedDataModule`` forwards
        the batch-transfer hooks to the DataModule it wraps, so Lightning never calls a
        LightningModule's own ``on_before_batch_transfer`` in the wrapped run.

        Args:
            setting: sizes, batch sizes, workers, loading cost, pinning.
            counter: every loader's ``worker_init_fn`` (None without workers).
            clock: times the steps.
        """

        def __init__(
            self, setting: Setting, counter: StartupCounter | None, clock: StepClock
        ) -> None:
            super().__init__()
            self.setting, self.clock = setting, clock
            self.arguments = loader_arguments(setting, counter, persistent=False)

        def on_before_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
            phase = "train" if self.trainer.training else f"val{dataloader_idx}"
            self.clock.start(phase, batch[0])
            return batch

        def setup(self, stage: str) -> None:
            self.data = ImageSets.of(self.setting)

        def train_dataloader(self) -> DataLoader[Any]:
            return train_loader(self.data, self.setting, self.arguments)

        def val_dataloader(self) -> list[DataLoader[Any]]:
            return eval_loaders(self.data, self.setting, self.arguments)


def fit_lightning(
    variant: Variant,
    setting: Setting,
    device: torch.device,
    clock: StepClock,
    counter: StartupCounter | None,
) -> torch.nn.Module:
    """Fit a Lightning variant; return the trained network."""
    module, data = LitResNet(setting, clock), ImageData(setting, counter, clock)
    cuda = device.type == "cuda"
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if cuda else "32-true",
        max_steps=setting.updates,
        val_check_interval=setting.eval_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=InterleavedDataModule(data) if variant.one_pool else data)
    return module.model


# --- one run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run(shared.Run):
    """A run's measurements and its steps' (see :class:`StepClock`).

    Args:
        busy_s: the steps' time on the GPU (on the host without CUDA).
        switches: every phase switch, in order.
    """

    busy_s: float = 0.0
    switches: tuple[Switch, ...] = ()

    @property
    def idle(self) -> float:
        """The share of the wall time the GPU did no step."""
        return 1 - self.busy_s / self.wall_s

    @property
    def idle_s(self) -> float:
        """The time the GPU did no step."""
        return self.wall_s - self.busy_s

    def waits(self, to_training: bool | None = None) -> list[float]:
        """The waits at the switches to training (True), to an evaluation set (False), or
        at all of them (None)."""
        return [s.wait_s for s in self.switches if to_training in (None, s.to_training)]

    @property
    def switch_s(self) -> float:
        """The waits at all switches, summed."""
        return sum(self.waits())


def device() -> torch.device:
    """CUDA's current device where there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit_once(variant: Variant, setting: Setting, context: BaseContext) -> Run:
    """Run ``variant`` once, measured; the wall time ends when the GPU has finished."""
    meter, where = shared.FitMeter(setting, context), device()
    clock = StepClock(meter.seen, where)
    fit = fit_lightning if variant.lightning else fit_loop
    with meter:
        model = fit(variant, setting, where, clock, meter.counter)
        busy_s = clock.busy_s()
    weights = model.state_dict() if where.type == "cpu" else {}
    run = meter.run(variant.name, weights)
    measured = {field.name: getattr(run, field.name) for field in fields(run)}
    return Run(**measured, busy_s=busy_s, switches=tuple(clock.switches))


# --- the report -------------------------------------------------------------------------


def checksums(seen: shared.Seen) -> dict[str, tuple[int, int, int]]:
    """Per source, in order of first appearance: batches, samples, and the CRC-32 of its
    sample indices in the order seen."""
    indices: dict[str, list[int]] = {}
    batches: dict[str, int] = {}
    for phase, batch in seen.batches:
        indices.setdefault(phase, []).extend(batch)
        batches[phase] = batches.get(phase, 0) + 1
    return {
        phase: (batches[phase], len(each), zlib.crc32(str(each).encode()))
        for phase, each in indices.items()
    }


def same_samples(results: shared.Results, cpu: bool) -> str:
    """The line saying that every run saw the same samples (:func:`shared.run_rounds` has
    checked them), with their checksums per source."""
    first = next(iter(results.runs.values()))[0]
    sums = "; ".join(
        f"{phase}: {batches} batches, {samples} samples, crc32 {crc:08x}"
        for phase, (batches, samples, crc) in checksums(first.seen).items()
    )
    weights = ", final weights bit-identical" if cpu else ""
    return f"same samples in every run: yes ({sums}{weights})"


def median_of(measure: Callable[[Run], float], spec: str) -> shared.Column:
    """A table cell: the median of ``measure`` over a variant's runs, formatted by ``spec``."""

    def cell(results: shared.Results, name: str) -> str:
        return format(results.median(name, measure), spec)

    return cell


def waits_cell(to_training: bool) -> shared.Column:
    """A table cell: the waits at one kind of switch, summed (median over the rounds), and
    the longest of them."""

    def cell(results: shared.Results, name: str) -> str:
        runs: list[Run] = results.runs[name]
        total = statistics.median(sum(run.waits(to_training)) for run in runs)
        longest = max((max(run.waits(to_training), default=0.0) for run in runs), default=0.0)
        return f"{total:.3f} ({longest:.3f})"

    return cell


def columns(cuda: bool) -> list[shared.Column]:
    """The columns this benchmark adds to the shared table."""
    busy = "GPU busy s (CUDA events)" if cuda else "step time s (CPU stand-in for GPU busy)"
    return [
        (busy, median_of(attrgetter("busy_s"), ".2f")),
        ("GPU idle share" if cuda else "idle share (CPU)", median_of(attrgetter("idle"), ".0%")),
        ("evaluation-start waits s: sum (max)", waits_cell(False)),
        ("training-restart waits s: sum (max)", waits_cell(True)),
        ("all switch waits s", median_of(attrgetter("switch_s"), ".3f")),
    ]


def switch_lines(results: shared.Results) -> list[str]:
    """Every switch wait of each variant's first run, in order."""
    lines = [
        "waits at each switch of the first round, ms (E: evaluation start, T: training restart):"
    ]
    for name, runs in results.runs.items():
        run: Run = runs[0]
        waits = ", ".join(
            f"{'T' if s.to_training else 'E'} {s.wait_s * 1000:.1f}" for s in run.switches
        )
        lines.append(f"- {name}: {waits}")
    return lines


def ratios(results: shared.Results, cuda: bool) -> list[str]:
    """The ratios of the loops and of the Lightning runs to their one-pool variant."""
    idle = "GPU idle time" if cuda else "time outside the steps (CPU)"
    pairs = [
        ("non-persistent", "interleaved", idle, "idle_s"),
        ("persistent", "interleaved", idle, "idle_s"),
        ("lightning", "lightning wrapped", "wall time", "wall_s"),
        ("lightning", "lightning wrapped", idle, "idle_s"),
        ("lightning wrapped", "lightning", "peak memory", "peak_pss"),
    ]
    if results.setting.passes:
        pairs += [
            ("non-persistent", "interleaved", "switch waits", "switch_s"),
            ("persistent", "interleaved", "switch waits", "switch_s"),
            ("lightning", "lightning wrapped", "switch waits", "switch_s"),
        ]
    return [shared.ratio_line(results, f"{a} / {b}, {what}", a, b, m) for a, b, what, m in pairs]


def device_line(where: torch.device, setting: Setting) -> str:
    """The device, the versions and the copies."""
    versions = f"torch {torch.__version__}, pytorch_lightning {pl.__version__}"
    copies = f"pin_memory={setting.pin_memory}, non_blocking={setting.non_blocking}"
    if where.type == "cuda":
        name = torch.cuda.get_device_name(where)
        return f"device: {name} (CUDA {torch.version.cuda}); {versions}; {copies}"
    return (
        f"device: CPU (no CUDA: steps timed by perf_counter, a stand-in for CUDA events); "
        f"{versions}; {copies}"
    )


OPTIONS = {
    **shared.options(
        "optimizer steps of a run",
        ("eval-every", "an evaluation of both sets every this many updates"),
        "num_workers of every loader",
    ),
    "start-method": ("start_method", "the workers' start method: fork, forkserver or spawn"),
    "image-size": ("image_size", "the images' height and width"),
    "width": ("width", "channels of the ResNet's first block"),
    "pin-memory": ("pin_memory", "pin_memory=True on every loader"),
    "non-blocking": ("non_blocking", "copy batches to the device with non_blocking=True"),
}
SMALL_FLAG = (
    "small",
    "the small configuration: tiny images and network, one round (the default without CUDA)",
)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> shared.Report:
    """Run the benchmark, print the table and the ratios, and return them.

    Raises:
        SampleMismatchError: two runs did not see the same samples (on the CPU: or their
            final weights differ).
    """
    where = device()
    cuda = where.type == "cuda"
    full, small = settings(cuda)
    description = __doc__.splitlines()[0]
    setting = shared.parse(argv, description, full if cuda else small, small, OPTIONS, SMALL_FLAG)
    quiet_lightning()
    log(device_line(where, setting))
    results = shared.run_rounds(setting, VARIANTS, fit_once, log)
    head = shared.describe(
        setting,
        "updates",
        "evaluation",
        f"; {setting.image_size}x{setting.image_size} images, a ResNet of width {setting.width}",
    )
    tail = [*shared.summary(results, "interleaved", "the loop"), *ratios(results, cuda)]
    tail += switch_lines(results)
    same = same_samples(results, not cuda)
    return shared.report(results, head, same, tail, log, columns(cuda))


if __name__ == "__main__":
    main()
