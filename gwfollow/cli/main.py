"""The ``gwfollow`` command: one sub-command per module in :mod:`gwfollow.cli`.

Heavy imports happen inside each command's ``main``; errors that gwfollow
raises on purpose are printed on one line and give exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "info": "Describe a sky map: metadata, 50/90%% areas, distance.",
    "moc": "Write credible-region MOCs (or space-time MOCs) of a sky map.",
    "coverage": "How much of a sky map survey / catalogue coverages hold.",
    "fields": "Rank a telescope's fields by enclosed probability.",
    "observe": "When a sky map can be observed from a site (probability per time slice).",
    "plan": "Plan a telescope's exposures at a site: time-ordered, observable, overheads included.",
    "rank": "Rank the galaxies of a catalogue by 3-D posterior density.",
    "catalog": "Import a table as a HEALPix-partitioned (HATS) catalogue; describe one.",
    "replay": "Replay archived alerts (files or a Kafka topic) through the pipeline.",
    "serve": "Run the service: alert listeners, pipeline and REST API.",
    "deadletters": "List dead letters, or requeue them for processing.",
    "token": "Make a bearer token and the sha256 digest to put in the configuration.",
    "samp": "Send a sky map's or an event's MOC, tables and map to TOPCAT / Aladin over SAMP.",
    "demo": "Run the whole chain on a simulated sky map (no network, no files).",
}


def _module(name: str):
    return importlib.import_module(f"gwfollow.cli.{name}")


def parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    p = argparse.ArgumentParser(
        prog="gwfollow",
        description="Gravitational-wave follow-up on IVOA MOCs.",
        epilog="example:\n  gwfollow moc bayestar.multiorder.fits --level 0.5 0.9 -o region.fits\n\n"
        "Run 'gwfollow COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from gwfollow.version import __version__

    p.add_argument("--version", action="version", version=f"gwfollow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_ in COMMANDS.items():
        mod = _module(name)
        sp = sub.add_parser(
            name,
            help=help_,
            description=mod.__doc__.strip().splitlines()[0],
            epilog=mod.EXAMPLE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.configure(sp)
        sp.set_defaults(_main=mod.main)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gwfollow``; returns the exit status."""
    from gwfollow.errors import GwfollowError

    args = parser().parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except GwfollowError as exc:
        print(f"gwfollow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path or port the user named (missing directory, port in use): no traceback
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"gwfollow {args.command}: error: {exc.strerror or exc}{where} "
              "(check the path, or choose another port)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gwfollow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
