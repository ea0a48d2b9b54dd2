"""Run the service: alert listeners, pipeline and REST API."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  gwfollow serve --config site.toml
      listens on service.host:service.port; with [kafka] enabled = true it consumes
      igwn.gwalert; alerts may also be POSTed to /api/v1/alerts with a write token"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration file overriding config/default.toml")
    p.add_argument("--host", default=None, help="override service.host")
    p.add_argument("--port", type=int, default=None, help="override service.port")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from aiohttp import web

    from gwfollow.config import load_config
    from gwfollow.service import make_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    svc = cfg.service
    if args.host or args.port is not None:
        svc = dataclasses.replace(svc, host=args.host or svc.host, port=svc.port if args.port is None else args.port)
        cfg = dataclasses.replace(cfg, service=svc)
    loop = None
    if svc.uvloop:
        try:
            import uvloop  # optional: the faster event loop (libuv); asyncio's own otherwise
        except ImportError:
            logging.getLogger("gwfollow").warning("service.uvloop = true but uvloop is not installed; "
                                                  "using asyncio's event loop (pip install uvloop)")
        else:
            loop = uvloop.new_event_loop()
    web.run_app(make_app(cfg), host=svc.host, port=svc.port, print=lambda s: logging.getLogger("gwfollow").info(s),
                shutdown_timeout=30.0, loop=loop)
    return 0
