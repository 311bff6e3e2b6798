"""The models of the zoo, and their lookup by short name (`get("vae")`)."""

import keras

from tfdlgm.models.base import LatentModel
from tfdlgm.models.dlgm import DLGM
from tfdlgm.models.factor_analysis import FactorAnalysis
from tfdlgm.models.lvae import LadderVAE
from tfdlgm.models.vae import VAE

__all__ = ["LatentModel", "DLGM", "FactorAnalysis", "LadderVAE", "VAE", "get", "registered"]


def registered() -> dict[str, type[LatentModel]]:
    """`{short_name: class}` of every model class registered with Keras' serialisation
    (`keras.saving.register_keras_serializable`) that subclasses `LatentModel` and sets a
    `short_name`: the four above, and any model of your own registered the same way."""
    return {
        obj.short_name: obj
        for obj in keras.saving.get_custom_objects().values()
        if isinstance(obj, type) and issubclass(obj, LatentModel) and obj.short_name
    }


def get(name: str) -> type[LatentModel]:
    """The registered model class whose `short_name` is `name` (`"vae"` -> `VAE`).

    Raises:
        ValueError: if no registered model has that short name (the message lists them).
    """
    classes = registered()
    if name not in classes:
        raise ValueError(
            f"Unknown model {name!r}. Registered models: {', '.join(sorted(classes))}."
        )
    return classes[name]
