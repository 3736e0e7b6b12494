"""The zoo: models that ship inside the package, and the results measured with them.

- :func:`load` (also ``diffbook.load``) -> a model object with ``.sample`` (:mod:`diffbook.zoo.model`);
- :mod:`diffbook.zoo.registry`: weights (fp16 safetensors), model cards and SHA-256s on disk;
- :mod:`diffbook.zoo.export`: the diffusion models as diffusers pipelines;
- :mod:`diffbook.zoo.results`: the measured results (JSON with provenance) that the chapters plot.
"""

import importlib

from . import model, registry, results
from .model import ClassifierModel, DiffusionModel, GeneratorModel, load, load_student
from .registry import WEIGHTS_DIR, ZooError, available, load_network, read_registry, save_model

__all__ = ["export", "model", "registry", "results", "load", "load_student", "load_network", "available", "read_registry", "save_model", "ZooError",
           "WEIGHTS_DIR", "DiffusionModel", "GeneratorModel", "ClassifierModel"]


def __getattr__(name: str):
    if name == "export":  # it imports diffusers' pipelines (seconds), so it loads on first use
        return importlib.import_module(".export", __name__)
    raise AttributeError(f"module 'diffbook.zoo' has no attribute {name!r}.")
