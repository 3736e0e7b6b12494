"""Data: Fashion-MNIST (:mod:`~diffbook.data.fashion`), the 2D toy sets (:mod:`~diffbook.data.toy2d`) and the ink
drop of chapter 1 (:mod:`~diffbook.data.ink`)."""

from . import fashion, ink, toy2d

__all__ = ["fashion", "ink", "toy2d"]
