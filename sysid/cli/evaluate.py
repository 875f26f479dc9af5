"""Metrics and reports of a fit run directory (shared by ``fit``, ``compare`` and ``report``)."""

from __future__ import annotations
