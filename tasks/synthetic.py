"""Registers `synthetic_{repr}_*` Tasks/Mixtures for `$JAXREC_SYNTHETIC_DIR` (see `tasks`)."""

from tasks import register_from_env

REGISTERED = register_from_env("JAXREC_SYNTHETIC_DIR", name="synthetic")
