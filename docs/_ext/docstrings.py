"""A griffe extension for the API reference: the library's docstrings, read as Markdown.

The docstrings are written for ``help()`` and doctest: ``Example:`` sections and Sphinx-style
roles (``:class:`~interleaved_sampler.config.SamplerIntervalConfig```). Griffe's Google parser
knows ``Examples:`` (which renders the ``>>>`` lines as code) and Markdown knows code spans, so
both are rewritten when the docstrings are loaded; the source stays as it is.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^(\s*)Example:$", re.MULTILINE)
ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([\w.]+)`")


def as_markdown(text: str) -> str:
    """``text`` with ``Examples:`` sections and roles as code spans.

    Example:
        >>> as_markdown("See :class:`~a.b.C`.\\n\\nExample:\\n    >>> 1")
        'See `C`.\\n\\nExamples:\\n    >>> 1'
    """
    text = EXAMPLE.sub(r"\1Examples:", text)
    return ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)


class MarkdownDocstrings(griffe.Extension):
    """Rewrites every loaded docstring with :func:`as_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)
