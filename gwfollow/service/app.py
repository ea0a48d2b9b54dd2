"""The application factory: owns the store, pipeline and listener lifetimes.

Start-up and shutdown are paired in ``cleanup_ctx`` generators, in order:
store -> pipeline -> webhooks -> listeners; shutdown runs in reverse, so
listeners stop taking messages before the pipeline drains, and the store
closes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gwfollow.config import Config
from gwfollow.pipeline.deadletters import watch_requeued
from gwfollow.pipeline.listeners import KafkaListener, SpoolListener
from gwfollow.pipeline.runner import Pipeline
from gwfollow.service.caching import install_cache
from gwfollow.service.fastpath import cached_get
from gwfollow.service.keys import CONFIG, LISTENERS, PIPELINE, REPORTS, RESPONSE_CACHE, STORE
from gwfollow.service.middleware import cors_middleware, error_middleware
from gwfollow.service.reports import ReportCache
from gwfollow.service.responsecache import ResponseCache
from gwfollow.service.routes import add_routes
from gwfollow.service.safety import security_headers
from gwfollow.service.webhooks import WebhookDispatcher
from gwfollow.store import Store

log = logging.getLogger("gwfollow.service")


def make_app(config: Config, *, store: Store | None = None) -> web.Application:
    """Build the gwfollow application.

    Parameters
    ----------
    config : Config
    store : Store, optional
        An open store to use (tests); by default ``config.store.path`` is
        opened at start-up and closed at shutdown.
    """
    app = web.Application(client_max_size=int(config.service.max_body_mib * 2**20),
                          middlewares=[cached_get, security_headers, cors_middleware, error_middleware])
    app[CONFIG] = config
    app[LISTENERS] = []
    app[RESPONSE_CACHE] = ResponseCache(int(config.service.response_cache_mib * 2**20))
    app[REPORTS] = ReportCache(int(config.service.report_cache_mib * 2**20))

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        own = store is None
        app[STORE] = store or Store(config.store.path)
        yield
        if own:
            app[STORE].close()

    dispatcher: list[WebhookDispatcher] = []

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        pipe = Pipeline(config, app[STORE])
        if config.service.webhook_urls:  # announcements are written with the alerts, resumed ones too
            dispatcher.append(WebhookDispatcher(config.service, pipe))
            dispatcher[0].attach()
        await pipe.start()
        app[PIPELINE] = pipe
        install_cache(app)
        watch = None
        if config.service.requeue_poll_s > 0:
            watch = asyncio.create_task(watch_requeued(pipe, config.service.requeue_poll_s),
                                        name="gwfollow-requeued")
        yield
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await pipe.stop()

    async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
        if not dispatcher:
            yield
            return
        await dispatcher[0].start()
        yield
        await dispatcher[0].stop()

    async def listeners_ctx(app: web.Application) -> AsyncIterator[None]:
        tasks = []
        if config.kafka.enabled:
            k = KafkaListener(config.kafka, app[PIPELINE])
            app[LISTENERS].append(k)
            tasks.append(asyncio.create_task(k.run(), name="gwfollow-kafka"))
        if config.spool.enabled:
            s = SpoolListener(config.spool, app[PIPELINE], config.service.max_body_mib)
            app[LISTENERS].append(s)
            tasks.append(asyncio.create_task(s.run(), name="gwfollow-spool"))
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    app.cleanup_ctx.extend([store_ctx, pipeline_ctx, webhooks_ctx, listeners_ctx])
    add_routes(app)
    return app
