"""The aiohttp service: one application from :func:`make_app`."""

from gwfollow.service.app import make_app

__all__ = ["make_app"]
