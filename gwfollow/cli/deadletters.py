"""List dead letters, or make them pending again so the pipeline processes them."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow deadletters list --db gwfollow.sqlite
      id, raw message, transient or not, source and reason of each open dead letter
  gwfollow deadletters requeue --db gwfollow.sqlite --transient
      makes the messages of transient dead letters (worker crash, fetch time-out)
      pending; a running `gwfollow serve` picks them up within
      service.requeue_poll_s seconds, a stopped one at its next start
  gwfollow deadletters requeue --db gwfollow.sqlite 12 15"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "requeue"), help="list open dead letters, or requeue them")
    p.add_argument("ids", nargs="*", type=int, help="dead-letter ids (default: all open ones)")
    p.add_argument("--db", default=None, help="SQLite database (default: store.path of the configuration)")
    p.add_argument("--transient", action="store_true", help="only dead letters marked transient")
    p.add_argument("--all", action="store_true", help="list: include dead letters already requeued")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gwfollow.config import load_config
    from gwfollow.errors import GwfollowError
    from gwfollow.store import Store

    path = args.db or load_config(args.config).store.path
    if not Path(path).is_file():
        raise GwfollowError(f"{path}: no such database", hint="give the service's database with --db")
    store = Store(path)
    try:
        if args.action == "list":
            rows = store.dead_letters(only_open=not args.all)
            if args.transient:
                rows = [r for r in rows if r["transient"]]
            if args.ids:
                rows = [r for r in rows if r["id"] in set(args.ids)]
            for r in rows:
                print(f"{r['id']:6d}  raw {r['raw_id']}  {'transient' if r['transient'] else 'permanent'}  "
                      f"{r['at']}  {r['source']}: {r['error_type']}: {r['reason']}")
            print(f"{len(rows)} dead letter(s)")
        else:
            raw_ids = store.requeue(args.ids or None, args.transient)
            print(f"requeued {len(raw_ids)} message(s)" + (f": raw {', '.join(map(str, raw_ids))}" if raw_ids else "")
                  + "; a running `gwfollow serve` processes them within service.requeue_poll_s s,"
                  " a stopped one when it next starts")
    finally:
        store.close()
    return 0
