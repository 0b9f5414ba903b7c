"""One DataLoader and one worker pool for training and every periodic evaluation."""

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.data import InterleavedBatch
from interleaved_sampler.loader import InterleavedDataLoader
from interleaved_sampler.protocols import SizedIterable
from interleaved_sampler.sampler import InterleavedSampler, SamplerOutput
from interleaved_sampler.samplers import SeededRandomSampler
from interleaved_sampler.schedule import TrainingProgress
from interleaved_sampler.split import InterleavedLoaders, OutOfTurnError
from interleaved_sampler.stream import Stream

__all__ = [
    "InterleavedBatch",
    "InterleavedDataLoader",
    "InterleavedLoaders",
    "InterleavedSampler",
    "InterleavedSamplerConfig",
    "OutOfTurnError",
    "SamplerIntervalConfig",
    "SamplerOutput",
    "SeededRandomSampler",
    "SizedIterable",
    "Stream",
    "TrainingProgress",
]
__version__ = "0.3.0"  # the one place of the version: pyproject.toml reads it
