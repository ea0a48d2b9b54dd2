"""Send an event's products to desktop VO tools (TOPCAT, Aladin) over SAMP.

SAMP (IVOA Simple Application Messaging Protocol 1.3) lets applications on
one desktop pass data through a hub.  :func:`send_products` sends

* the credible-region MOC as ``coverage.load.moc.fits`` (Aladin draws it),
* each ranked table as ``table.load.votable`` (TOPCAT and Aladin load it,
  with the UCDs, units and provenance of :mod:`gwfollow.products.votable`),
* the sky map as ``image.load.fits`` (Aladin shows the HEALPix map),

to every client of the running hub that subscribes to the message type,
one synchronous call per client (``callAndWait``, SAMP 1.3 section 3.13):
the call returns when the client has loaded the file, so its reply tells
whether TOPCAT or Aladin took it.  Fire-and-forget notifications are not
used: a hub drops a notification whose sender has disconnected before the
hub forwards it, and the sender would not learn that a client failed.  The files are written to a directory and referenced by
``file://`` URLs, which desktop clients on the same machine read; with
``serve_seconds`` they are also served over HTTP on 127.0.0.1 for that long
(for clients that only fetch ``http`` URLs) and the messages carry the HTTP
URLs.

The products come from a sky map (:func:`products_from_skymap`, computed
here as the pipeline computes them) or from a stored event
(:func:`products_from_store`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import http.server
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gwfollow.config import Config
from gwfollow.errors import SampError
from gwfollow.products.report import convert_table, table_bytes
from gwfollow.regions.moc import credible_ranges
from gwfollow.regions.mocio import credible_moc_fits_bytes
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.store import Store
from gwfollow.targets.fields import rank_fields, telescope_from_config
from gwfollow.targets.sources import open_catalog
from gwfollow.version import __version__

MOC_MTYPE = "coverage.load.moc.fits"
TABLE_MTYPE = "table.load.votable"
IMAGE_MTYPE = "image.load.fits"


@dataclass(frozen=True)
class SampItem:
    """One file to send: its SAMP message type, a file name and a human name."""

    mtype: str
    filename: str
    name: str
    data: bytes


@dataclass
class SampProducts:
    """What :func:`send_products` sends, in order (MOC, tables, sky map)."""

    label: str
    items: list[SampItem] = field(default_factory=list)


def products_from_skymap(path: str | Path, config: Config, *, level: float = 0.9,
                         catalogs: Sequence[str] = ("openngc",), telescopes: Sequence[str] = (),
                         limit: int = 100) -> SampProducts:
    """The MOC at ``level``, the ranked galaxies of each catalogue, the ranked fields
    of each configured telescope and the sky map itself, for a sky-map file.

    Raises
    ------
    SkyMapError, CatalogError, FieldsError
        The sky map, a catalogue or a telescope cannot be used.
    """
    data = Path(path).read_bytes()
    sm = read_skymap(data, name=str(path), config=config.skymap)
    boundary = config.skymap.boundary
    label = sm.meta.object_id or Path(path).name
    out = SampProducts(label=label)
    (r,) = credible_ranges(sm, [level], boundary)
    out.items.append(SampItem(MOC_MTYPE, f"{label}-moc-{level:g}.fits", f"{label} {level:.0%} region",
                              credible_moc_fits_bytes(r, sm.meta.moc_order, object_id=sm.meta.object_id,
                                                      level=level, boundary=boundary, skymap_sha256=sm.sha256,
                                                      version=__version__)))
    (region,) = credible_ranges(sm, [level], "include")
    prov = {"alert_id": sm.meta.object_id}
    for spec in catalogs:
        ranked = open_catalog(spec).rank(sm, region, limit=limit or None)
        out.items.append(SampItem(TABLE_MTYPE, f"{label}-galaxies-{ranked.catalog.name}.xml",
                                  f"{label} galaxies ({ranked.catalog.name})",
                                  table_bytes(ranked.table(), "votable", prov)))
    tcs = {t.name: t for t in config.telescopes}
    for name in telescopes:
        if name not in tcs:
            raise SampError(f"unknown telescope {name!r}; configured: {', '.join(tcs) or '-'}")
        tc = tcs[name]
        ranked = rank_fields(sm, telescope_from_config(tc), target=tc.target, order=tc.order)
        out.items.append(SampItem(TABLE_MTYPE, f"{label}-fields-{name}.xml", f"{label} fields ({name})",
                                  table_bytes(ranked.table(), "votable", prov)))
    out.items.append(SampItem(IMAGE_MTYPE, f"{label}-skymap.fits", f"{label} sky map", data))
    return out


def products_from_store(store: Store, superevent_id: str, *, level: float = 0.9) -> SampProducts:
    """The stored products of an event's latest sky map: MOC at ``level``, every
    ranked table (galaxies, fields), each observation plan, and the sky map.

    Raises
    ------
    SampError
        No such event, no sky map, no MOC at that level, or the event was retracted.
    """
    ev = store.event(superevent_id)
    if ev is None:
        raise SampError(f"no event {superevent_id!r} in the database")
    if ev.state == "retracted":
        raise SampError(f"{superevent_id} was retracted; its products are withdrawn")
    latest = store.latest_skymap(superevent_id)
    if latest is None:
        raise SampError(f"{superevent_id} has no sky map yet")
    prods = [p for p in store.products_of(superevent_id, False) if p["skymap_id"] == latest["id"]]
    moc = next((p for p in prods if p["kind"] == "moc" and abs(p["level"] - level) < 1e-9), None)
    if moc is None:
        levels = ", ".join(f"{p['level']:g}" for p in prods if p["kind"] == "moc")
        raise SampError(f"no MOC at level {level:g} for {superevent_id}; stored: {levels or '-'}")
    out = SampProducts(label=superevent_id)
    out.items.append(SampItem(MOC_MTYPE, f"{superevent_id}-moc-{level:g}.fits",
                              f"{superevent_id} {level:.0%} region", store.product_data(moc["id"])))
    prov = {"alert_id": superevent_id, "alert_type": latest.get("alert_type")}
    for p in prods:
        if p["kind"] in ("galaxies", "fields"):
            body = convert_table(store.product_data(p["id"]), "votable", None, None, prov)
            out.items.append(SampItem(TABLE_MTYPE, f"{superevent_id}-{p['kind']}-{p['name']}.xml",
                                      f"{superevent_id} {p['kind']} ({p['name']})", body))
    for p in prods:  # observation plans (one row per exposure, with its footprint as s_region)
        if p["kind"] == "plan" and not p["provenance"].get("error"):
            body = convert_table(store.product_data(p["id"]), "votable", None, None, prov)
            out.items.append(SampItem(TABLE_MTYPE, f"{superevent_id}-plan-{p['name'].replace('@', '-')}.xml",
                                      f"{superevent_id} plan ({p['name']})", body))
    out.items.append(SampItem(IMAGE_MTYPE, f"{superevent_id}-skymap.fits", f"{superevent_id} sky map",
                              store.skymap_bytes(latest["id"])))
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="gwfollow-samp-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_products(products: SampProducts, directory: str | Path | None = None) -> Path:
    """Write the files of ``products`` to ``directory`` (a new temporary one by default)."""
    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="gwfollow-samp-"))
    d.mkdir(parents=True, exist_ok=True)
    for it in products.items:
        (d / it.filename).write_bytes(it.data)
    return d


def _reply_text(answer: dict[str, Any]) -> str:
    """``"ok"`` for a ``samp.ok`` response, else its status and error text (SAMP 1.3 section 3.9)."""
    status = answer.get("samp.status", "")
    if status == "samp.ok":
        return "ok"
    err = answer.get("samp.error") or {}
    return f"{status or 'no status'}: {err.get('samp.errortxt', 'no error text')}"


def _client_name(client: Any, client_id: str) -> str:
    """A client's ``samp.name`` from the hub's metadata ("" when it declared none or the hub cannot tell)."""
    from pyvo.samp import SAMPClientError, SAMPHubError, SAMPProxyError  # as in send_products

    try:
        return str(client.get_metadata(client_id).get("samp.name", ""))
    except (SAMPProxyError, SAMPClientError, SAMPHubError, OSError):
        return ""


def _message(it: SampItem, url: str, tag: str) -> dict[str, Any]:
    key = {MOC_MTYPE: None, TABLE_MTYPE: "table-id", IMAGE_MTYPE: "image-id"}[it.mtype]
    params = {"url": url, "name": it.name}
    if key:
        params[key] = f"{it.filename}#{tag}"
    return {"samp.mtype": it.mtype, "samp.params": params}


def send_products(products: SampProducts, *, directory: str | Path | None = None,
                  hub_params: dict[str, str] | None = None, serve_seconds: float = 0.0,
                  reply_seconds: float = 30.0, name: str = "gwfollow") -> list[dict[str, Any]]:
    """Send the products to the clients of the running SAMP hub.

    Parameters
    ----------
    products : SampProducts
    directory : path, optional
        Where the files are written (kept after the call: clients load them
        later); a new temporary directory by default.
    hub_params : dict, optional
        The hub's lock-file parameters; by default the standard profile's
        discovery (``$SAMP_HUB`` or ``~/.samp``).
    serve_seconds : float
        With a positive value, serve the directory over HTTP on 127.0.0.1
        and send HTTP URLs, keeping the server up this long after sending.
    reply_seconds : float
        How long each client may take to load a file and reply.
    name : str
        The client name shown by the hub.

    Returns
    -------
    list of dict
        The messages sent (``samp.mtype``, ``samp.params``), each with the
        ids of the clients it went to under ``recipients``, their names
        (``samp.name`` of the hub's metadata, e.g. ``"topcat"``) under
        ``names``, each client's answer under ``replies`` (``"ok"``, or
        what went wrong) and, under ``as``, the clients that got it as
        another message type (a MOC as ``image.load.fits`` for Aladin, which
        does not subscribe to ``coverage.load.moc.fits``).  ``table-id`` and
        ``image-id`` are the file name and a tag unique to this send.

    Raises
    ------
    SampError
        No hub is running (transient: start TOPCAT or Aladin, which run one).
    """
    # The SAMP client is needed only by this command; pyvo.samp starts threads on import use.
    from pyvo.samp import SAMPClientError, SAMPHubError, SAMPIntegratedClient, SAMPProxyError

    d = write_products(products, directory)
    client = SAMPIntegratedClient(name=name, description=f"gwfollow {__version__}: gravitational-wave follow-up")
    try:
        client.connect(hub_params=hub_params)
    except (SAMPHubError, SAMPProxyError, OSError) as exc:
        raise SampError(f"no SAMP hub answered: {exc}", transient=True,
                        hint="start TOPCAT or Aladin (each runs a hub), or `python -m pyvo.samp.hub`") from exc
    sent = []
    names: dict[str, str] = {}
    wait = str(max(1, round(reply_seconds)))
    tag = uuid.uuid4().hex[:8]  # TOPCAT 4.8 refuses an id it already holds twice ("Duplicate table-id")

    def ask(rid: str, msg: dict[str, Any]) -> str:
        try:
            return _reply_text(client.call_and_wait(rid, msg, wait))
        except (SAMPProxyError, SAMPClientError, OSError) as exc:
            text = str(exc)
            return f"no reply within {wait} s" if "timeout" in text.lower() else f"no reply: {text}"

    try:
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(serve_directory(d)) if serve_seconds > 0 else None
            calls = []
            for it in products.items:
                path = d / it.filename
                url = base + it.filename if base else path.resolve().as_uri()
                msg = _message(it, url, tag)
                recipients = sorted(client.get_subscribed_clients(it.mtype))
                as_image = []
                if it.mtype == MOC_MTYPE:
                    as_image = sorted(set(client.get_subscribed_clients(IMAGE_MTYPE)) - set(recipients))
                for rid in recipients + as_image:
                    if rid not in names:
                        names[rid] = _client_name(client, rid)
                # Aladin Desktop 12.0 does not subscribe to coverage.load.moc.fits, yet draws a MOC FITS
                # file it is sent as image.load.fits (seen with TOPCAT 4.8 and Aladin 12.001).
                as_image = [rid for rid in as_image if names[rid].lower() == "aladin"]
                record = {**msg, "recipients": sorted(recipients + as_image), "file": str(path),
                          "as": {rid: IMAGE_MTYPE for rid in as_image}}
                sent.append(record)
                calls += [(record, rid, msg) for rid in recipients]
                calls += [(record, rid, {**msg, "samp.mtype": IMAGE_MTYPE}) for rid in as_image]
            # One synchronous call per (message, client), all at once: a client that never replies
            # (Aladin to image.load.fits) costs one wait, not one per message.
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(calls)))) as pool:
                answers = list(pool.map(lambda c: ask(c[1], c[2]), calls))
            for record in sent:
                record["names"] = {r: names[r] for r in record["recipients"]}
                record["replies"] = {}
            for (record, rid, _), answer in zip(calls, answers):
                record["replies"][rid] = answer
            if base:
                time.sleep(serve_seconds)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return sent
