"""The FLAN-T5 network (Flax), its named configurations and checkpoint import."""

from jaxrec.models.configs import CONFIGS, T5Config, get_config
from jaxrec.models.network import Transformer

__all__ = ["CONFIGS", "T5Config", "Transformer", "get_config"]
