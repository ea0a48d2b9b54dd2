"""Replay archived alerts (files, directories or a Kafka topic) through the pipeline."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow replay archive/ --db replay.sqlite --out products/
      processes every alert file under archive/ (JSON, VOEvent, FITS) in order of
      time created; writes products/<superevent>/moc-0.9.fits and summary.json
  gwfollow replay voevents/ --skymap-dir voevents/ --out products/
      archived VOEvents naming their sky maps by path, read from voevents/ only
  gwfollow replay --kafka 127.0.0.1:9092 --topic igwn.gwalert --from-beginning --out products/
  gwfollow replay archive/ --dask --workers 2 --out products/
      (events in parallel on a local Dask cluster; --dask tcp://HOST:8786 for an existing one)
exit status: 0 when every input was used, 1 when some were rejected (listed with
the reason; the run goes on), 2 on an error that stops the run"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="alert files or directories (searched recursively)")
    p.add_argument("--db", default=None, help="SQLite database to write (default: in memory)")
    p.add_argument("--out", default=None, help="write <superevent>/moc-<level>.fits and summary.json here")
    p.add_argument("--kafka", metavar="BOOTSTRAP", default=None, help="read a Kafka topic instead of files")
    p.add_argument("--topic", default="igwn.gwalert", help="Kafka topic (default igwn.gwalert)")
    p.add_argument("--from-beginning", action="store_true", help="read the topic from its first message")
    p.add_argument("--report", action="store_true",
                   help="with --out, also write report.html and sky.png for each event")
    p.add_argument("--filters", action="store_true",
                   help="apply the configured [filters] (default: process every alert given)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: service.workers)")
    p.add_argument("--dask", nargs="?", const="local", default=None, metavar="SCHEDULER",
                   help="process events in parallel on a Dask cluster: a LocalCluster of --workers processes, "
                   "or the scheduler at SCHEDULER (e.g. tcp://10.0.0.5:8786)")
    p.add_argument("--offline", action="store_true",
                   help="do not retry sky-map downloads (VOEvents whose map cannot be fetched at once "
                   "become dead letters)")
    p.add_argument("--skymap-dir", metavar="DIR", default=None,
                   help="read sky maps that alerts name by path or file:// URL from inside DIR "
                   "(fetch.local_dir; by default local paths are refused)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import sys
    from pathlib import Path

    from gwfollow.config import load_config
    from gwfollow.errors import GwfollowError
    from gwfollow.pipeline.replay import (Progress, collect_files, order_messages, read_input, read_kafka,
                                          rejection_summary, replay_messages)
    from gwfollow.products.summary import write_outputs
    from gwfollow.store import Store

    import logging

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    unreadable: list[tuple[str, str]] = []
    if args.offline:
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, retries=0, timeout_s=5.0))
    if args.skymap_dir:
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, local_dir=args.skymap_dir))
    if args.workers:
        cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=args.workers))
    if args.kafka:
        items = read_kafka(args.kafka, args.topic, args.from_beginning)
    else:
        if not args.paths:
            raise GwfollowError("nothing to replay", hint="give alert files or directories, or --kafka")
        items = []
        for f in collect_files(args.paths):
            try:
                items.append((read_input(f, cfg.service.max_body_mib), str(f)))
            except GwfollowError as exc:
                unreadable.append((str(f), str(exc)))
    messages = order_messages(items)
    store = Store(args.db or ":memory:")
    progress = None if args.quiet else Progress(len(messages))

    def show(m, o) -> None:
        if progress:
            what = f"{o.superevent_id or '?'} {o.alert_type or ''} {o.status}"
            progress.update(what if o.status != "dead" else f"{Path(m.source).name}: dead ({o.reason})")

    if args.dask:
        from gwfollow.pipeline.distributed import replay_on_dask

        def event_done(sid: str, done: int, total: int) -> None:
            if not args.quiet:
                print(f"events on the cluster: {done}/{total} ({sid})", file=sys.stderr, flush=True)

        outcomes = replay_on_dask(messages, cfg, store, address=None if args.dask == "local" else args.dask,
                                  apply_filters=args.filters, n_workers=cfg.service.workers,
                                  on_outcome=show, on_event=event_done)
    else:
        outcomes = asyncio.run(replay_messages(messages, cfg, store, apply_filters=args.filters, on_outcome=show))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    if args.out:
        written = write_outputs(store, Path(args.out), cfg, reports=args.report)
        print(f"wrote {len(written)} file(s) under {args.out}")
    print("replayed %d message(s): %s" % (len(outcomes), ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))))
    rejected = unreadable + [(store.raw(o.raw_id).source, o.reason or "") for o in outcomes if o.status == "dead"]
    store.close()
    if rejected:
        print(rejection_summary(rejected, args.db), file=sys.stderr)
        return 1
    return 0
