"""Data: Fashion-MNIST (:mod:`~diffbook.data.fashion`), the 2D toy sets (:mod:`~diffbook.data.toy2d`) and the ink
drop of chapter 1 (:mod:`~diffbook.data.ink`)."""
