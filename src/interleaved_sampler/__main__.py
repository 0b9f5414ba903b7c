"""``python -m interleaved_sampler``: see :mod:`interleaved_sampler.cli`."""

from interleaved_sampler.cli import main

raise SystemExit(main())
