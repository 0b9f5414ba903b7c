"""Optional integrations with training frameworks; each imports its framework when imported.

- :mod:`interleaved_sampler.integrations.lightning`: PyTorch Lightning.
- :mod:`interleaved_sampler.integrations.transformers`: the Hugging Face ``Trainer``.

Accelerate and torchdata need no integration module: see ``docs/frameworks.md``.
"""
