"""Optional integrations with training frameworks; each imports its framework when imported.

- :mod:`interleaved_sampler.integrations.lightning`: PyTorch Lightning.

Accelerate and torchdata need no integration module: see ``docs/frameworks.md``.
"""
