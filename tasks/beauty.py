"""Registers `beauty_{repr}_*` Tasks/Mixtures for `$JAXREC_BEAUTY_DIR` (see `tasks`)."""

from tasks import register_from_env

REGISTERED = register_from_env("JAXREC_BEAUTY_DIR", name="beauty")
