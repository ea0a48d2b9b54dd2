"""Packaged configuration defaults (installed as ``gwfollow.defaults``)."""
