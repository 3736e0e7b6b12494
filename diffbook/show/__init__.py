"""Showing results in the chapters: image grids and plots (:mod:`~diffbook.show.plots`), score fields
(:mod:`~diffbook.show.fields`) and the image-model explorer (:mod:`~diffbook.show.explore`)."""

from . import explore, fields, plots

__all__ = ["explore", "fields", "plots"]
