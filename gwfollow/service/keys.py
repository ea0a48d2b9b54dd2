"""The application's typed keys (aiohttp ``web.AppKey``): what the factory puts in the app.

Imported by the factory, the middleware and the views alike, so none of them imports another
to reach the application's state.
"""

from __future__ import annotations

from aiohttp import web

from gwfollow.config import Config
from gwfollow.pipeline.runner import Pipeline
from gwfollow.service.reports import ReportCache
from gwfollow.service.responsecache import ResponseCache
from gwfollow.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
LISTENERS = web.AppKey("listeners", list)
RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)
REPORTS = web.AppKey("reports", ReportCache)
