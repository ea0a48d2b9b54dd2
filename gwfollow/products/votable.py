"""FAIR VOTables: every VOTable gwfollow writes goes through :func:`votable_bytes`.

Each FIELD carries a UCD1+ word list (IVOA UCD1+ controlled vocabulary
1.5), a unit (VOUnits 1.0) and a description; positions reference a
``COOSYS`` (ICRS), times a ``TIMESYS`` (UTC, IVOA VOTable 1.4 section 4.2);
field footprints are DALI polygons (``xtype="polygon"``, DALI 1.1 section
3.3.7) in an ObsCore-style ``s_region`` column; provenance (sky-map
sha256, alert id and type, credible level, catalogue and version, gwfollow
version) is written as ``INFO`` elements (every key) and, with a UCD, as
``PARAM`` elements (the keys of :data:`PROVENANCE_PARAMS`), so TOPCAT,
Aladin and pyvo show it.

A writer of a new kind of table (plans, say) gives the metadata of its own
columns::

    from gwfollow.products.votable import ColumnMeta, votable_bytes

    body = votable_bytes(table, columns={
        "slot": ColumnMeta("meta.number", "", "Order of the pointing in the plan"),
        "t_start": ColumnMeta("time.start;obs", "", "Start of the exposure (UTC)", time=True),
    }, description="Observing plan")

Columns named as in :data:`COLUMNS` (``ra``, ``dec``, ``rank``, ...) need no
entry.  A column without metadata is an error (:class:`ReportError` naming
it), and so is a UCD outside the UCD1+ vocabulary (checked with astropy's
copy of the list), so no table leaves without descriptions or with a made-up UCD.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from astropy.io.votable.tree import CooSys, Info, Param, Resource, TableElement, TimeSys, VOTableFile
from astropy.io.votable.ucd import check_ucd
from astropy.table import Table

from gwfollow.errors import ReportError
from gwfollow.version import __version__


@dataclass(frozen=True)
class ColumnMeta:
    """What a VOTable FIELD says about one column.

    Attributes
    ----------
    ucd : str
        UCD1+ word list (``pos.eq.ra;meta.main``).
    unit : str
        VOUnit string ('' for dimensionless); overrides the table's unit.
    description : str
        One sentence for the reader.
    xtype : str or None
        DALI extended type (``polygon``, ``timestamp``, ``interval``).
    position : bool
        The column is a sky position: it references the ICRS ``COOSYS``.
    time : bool
        The column holds times: it references the UTC ``TIMESYS``.
    """

    ucd: str
    unit: str
    description: str
    xtype: str | None = None
    position: bool = False
    time: bool = False


#: Metadata of the columns gwfollow's tables share (galaxies, fields, observability).
COLUMNS: dict[str, ColumnMeta] = {
    "rank": ColumnMeta("meta.number", "", "Rank of the target, 1 = most probable"),
    "id": ColumnMeta("meta.id;meta.main", "", "Identifier of the galaxy in its catalogue"),
    "ra": ColumnMeta("pos.eq.ra;meta.main", "deg", "Right ascension (ICRS)", position=True),
    "dec": ColumnMeta("pos.eq.dec;meta.main", "deg", "Declination (ICRS)", position=True),
    "dist_mpc": ColumnMeta("pos.distance", "Mpc", "Luminosity distance of the galaxy"),
    "probdensity_2d": ColumnMeta("stat.probability", "sr-1",
                                 "GW sky-map probability per steradian at the position"),
    "probdensity_3d": ColumnMeta("stat.probability", "Mpc-3",
                                 "GW posterior probability per Mpc3 at the position and distance "
                                 "(ligo.skymap probdensity_vol)"),
    "score": ColumnMeta("stat.probability", "",
                        "Share of the ranked galaxies' total score (3-D density, optionally times luminosity)"),
    "cumscore": ColumnMeta("stat.probability;arith.sum", "", "Cumulative score down to this rank"),
    "field_id": ColumnMeta("meta.id;meta.main", "", "Field (tile) identifier in the telescope's grid"),
    "prob": ColumnMeta("stat.probability", "",
                       "GW probability enclosed by the field alone (in a plan: added by this exposure)"),
    "marginal_prob": ColumnMeta("stat.probability", "",
                                "Probability the field adds to the fields ranked before it"),
    "cumprob": ColumnMeta("stat.probability;arith.sum", "", "Probability of the union of the fields to this rank"),
    "selected": ColumnMeta("meta.code", "", "True when within the greedy selection reaching the target"),
    "s_region": ColumnMeta("pos.outline;obs.field", "deg",
                           "Footprint of the field: DALI polygon ra1 dec1 ra2 dec2 ... (ICRS)",
                           xtype="polygon", position=True),
    "start": ColumnMeta("time.start", "", "Start of the time slice (UTC, ISO 8601)", xtype="timestamp",
                        time=True),
    "end": ColumnMeta("time.end", "", "End of the time slice (UTC, ISO 8601)", xtype="timestamp", time=True),
    "sun_alt_deg": ColumnMeta("pos.az.alt", "deg", "Altitude of the Sun at the middle of the slice"),
    "probability": ColumnMeta("stat.probability", "",
                              "GW probability observable from the site in the slice (airmass and twilight limits)"),
    # observation plans (gwfollow.targets.plan): one row per exposure
    "start_utc": ColumnMeta("time.start;obs.exposure", "", "Start of the exposure (UTC, ISO 8601)",
                            xtype="timestamp", time=True),
    "end_utc": ColumnMeta("time.end;obs.exposure", "", "End of the exposure (UTC, ISO 8601)",
                          xtype="timestamp", time=True),
    "filter": ColumnMeta("meta.id;instr.filter", "", "Filter of the exposure"),
    "visit": ColumnMeta("meta.number;obs", "", "Visit number of the field (1 = first visit)"),
    "airmass": ColumnMeta("obs.airMass", "", "Airmass of the field at the middle of the exposure"),
    "telescope": ColumnMeta("meta.id;instr.tel", "", "Telescope that takes the exposure"),
    "site": ColumnMeta("meta.id;instr.obsty", "",
                       "Site (observatory) of the telescope; in a field list, the sites that can observe the "
                       "field in the window, joined by ';'"),
}

_WINDOWS = re.compile(r"^windows_(.+)$")

#: Provenance keys written as PARAMs too (with a UCD); every key is an INFO.
PROVENANCE_PARAMS: dict[str, tuple[str, str]] = {
    "alert_id": ("meta.id;src", "Superevent identifier of the alert"),
    "alert_type": ("meta.code.class", "Alert type (Preliminary, Initial, Update)"),
    "skymap_sha256": ("meta.id;meta.file", "SHA-256 of the sky-map file the table was computed from"),
    "level": ("stat.confidenceLevel", "Credible level of the region the targets were taken from"),
    "catalog": ("meta.id;meta.dataset", "Galaxy catalogue"),
    "catalog_version": ("meta.version;meta.dataset", "Version of the galaxy catalogue"),
    "gwfollow": ("meta.version;meta.software", "gwfollow version that wrote the table"),
}


def column_meta(name: str, columns: Mapping[str, ColumnMeta] | None = None) -> ColumnMeta:
    """The metadata of column ``name``: given in ``columns``, else known to gwfollow.

    Raises
    ------
    ReportError
        Nobody described the column.
    """
    if columns and name in columns:
        return columns[name]
    if name in COLUMNS:
        return COLUMNS[name]
    m = _WINDOWS.match(name)
    if m:
        return ColumnMeta("time.interval;obs", "",
                          f"Observable windows from site {m.group(1)}: UTC ISO 8601 intervals start/end "
                          "joined by ';'", time=True)
    raise ReportError(f"column {name!r} has no VOTable metadata (UCD, unit, description)",
                      hint="pass columns={name: ColumnMeta(...)} to votable_bytes")


def _param_value(v: Any) -> tuple[str, Any, str | None]:
    """(datatype, value, arraysize) of a provenance value."""
    if isinstance(v, (bool, np.bool_)):
        return "boolean", bool(v), None
    if isinstance(v, (int, np.integer)):
        return "long", int(v), None
    if isinstance(v, (float, np.floating)):
        return "double", float(v), None
    return "char", str(v), "*"


def votable_bytes(table: Any, *, columns: Mapping[str, ColumnMeta] | None = None,
                  provenance: Mapping[str, Any] | None = None, description: str | None = None,
                  name: str = "targets") -> bytes:
    """Serialise an astropy Table as a VOTable 1.4 with full metadata.

    Parameters
    ----------
    table : astropy.table.Table
        The rows; ``table.meta`` is provenance too.
    columns : mapping, optional
        Metadata of columns not in :data:`COLUMNS`, or overriding it.
    provenance : mapping, optional
        More provenance (``alert_id``, ``alert_type``, ...), added to ``table.meta``.
    description : str, optional
        The TABLE's description.
    name : str
        The TABLE's name.

    Returns
    -------
    bytes
        The VOTable document (TABLEDATA serialisation, UTF-8).

    Raises
    ------
    ReportError
        A column has no metadata.
    """
    prov: dict[str, Any] = {k: v for k, v in dict(table.meta).items() if v is not None}
    prov.update({k: v for k, v in (provenance or {}).items() if v is not None})
    prov.setdefault("gwfollow", __version__)
    metas = {c: column_meta(c, columns) for c in table.colnames}
    for c, m in metas.items():
        if not check_ucd(m.ucd, check_controlled_vocabulary=True):
            raise ReportError(f"column {c!r}: {m.ucd!r} is not a UCD1+ word list",
                              hint="see https://www.ivoa.net/documents/UCD1+/ for the words")

    t = table.copy(copy_data=False)
    t.meta.clear()
    for c in t.colnames:  # units come from the metadata, so CSV, JSON and VOTable agree
        t[c].unit = metas[c].unit or None
        if t[c].dtype.kind == "O":
            t[c] = np.asarray([str(x) for x in t[c]])
        if t[c].dtype.kind == "U":  # ASCII text as datatype="char" (DALI xtypes need it)
            try:
                t[c] = np.char.encode(np.asarray(t[c]), "ascii")
            except UnicodeEncodeError:
                pass
    config = {"version": "1.4", "version_1_1_or_later": True, "version_1_2_or_later": True,
              "version_1_3_or_later": True, "version_1_4_or_later": True}
    vt = VOTableFile(version="1.4", config=config)
    if any(m.position for m in metas.values()):
        vt.coordinate_systems.append(CooSys(ID="icrs", system="ICRS", config=config))
    if any(m.time for m in metas.values()):
        vt.time_systems.append(TimeSys(ID="utc", timescale="UTC", refposition="TOPOCENTER", config=config))
    res = Resource(type="results", config=config)
    vt.resources.append(res)
    tab = TableElement.from_table(vt, t)
    tab.ID = None
    tab.name = name
    res.tables.append(tab)
    if description:
        tab.description = description
    for f in tab.fields:
        m = metas[f.name]
        f.ID = None
        f.ucd = m.ucd
        f.unit = m.unit or None
        f.description = m.description
        if f.datatype == "char" and f.arraysize == "1":  # one-letter values (filter "r"): still text
            f.arraysize = "*"  # arraysize="1" is deprecated (VOTable 1.3 Erratum 3)
        if m.xtype:
            f.xtype = m.xtype
        if m.position:
            f.ref = "icrs"
        elif m.time:
            f.ref = "utc"
    for k, v in prov.items():
        if k in PROVENANCE_PARAMS:
            ucd, desc = PROVENANCE_PARAMS[k]
            datatype, value, arraysize = _param_value(v)
            p = Param(vt, ID=f"prov_{k}", name=k, datatype=datatype, arraysize=arraysize, value=value, ucd=ucd,
                      config=config)
            p.description = desc
            res.params.append(p)
        res.infos.append(Info(ID=f"info_{k}", name=str(k), value=str(v), config=config))
    buf = io.BytesIO()
    vt.to_xml(buf)
    return buf.getvalue()


def observability_table(summary: Mapping[str, Any]) -> Any:
    """A site's observability summary (:func:`gwfollow.targets.windows.site_summary`) as a Table.

    Columns ``start, end`` (UTC ISO 8601), ``sun_alt_deg`` (deg),
    ``probability``; the site and its limits are the table's provenance.
    """
    slices = list(summary.get("slices") or [])
    t = Table()
    t["start"] = np.asarray([s["start"] for s in slices], dtype=str)
    t["end"] = np.asarray([s["end"] for s in slices], dtype=str)
    t["sun_alt_deg"] = np.asarray([s["sun_alt_deg"] for s in slices], dtype=float)
    t["probability"] = np.asarray([s["probability"] for s in slices], dtype=float)
    for k in ("site", "max_airmass", "max_sun_alt_deg", "hours", "step_minutes", "total_observable_probability",
              "total_in_region"):
        if summary.get(k) is not None:
            t.meta[k] = summary[k]
    return t
