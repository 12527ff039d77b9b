"""The claims each chapter promises to judge: one module per chapter, each with a list ``CLAIMS``
of :class:`fbsgd.book.verdicts.Claim` (read by :func:`fbsgd.book.verdicts.promised`)."""
from __future__ import annotations

import pkgutil
from pathlib import Path

__all__ = ["chapters"]


def chapters() -> list[str]:
    """The chapters that declare claims."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
