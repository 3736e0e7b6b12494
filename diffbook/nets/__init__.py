"""Networks: the image U-Net (:mod:`~diffbook.nets.unet`), the NCSN score network (:mod:`~diffbook.nets.ncsn`), the
2D MLPs (:mod:`~diffbook.nets.mlp`), the GANs (:mod:`~diffbook.nets.gan`, :mod:`~diffbook.nets.gan2d`) and the
feature classifier of the metrics (:mod:`~diffbook.nets.classifier`)."""

from . import classifier, gan, gan2d, mlp, ncsn, unet

__all__ = ["classifier", "gan", "gan2d", "mlp", "ncsn", "unet"]
