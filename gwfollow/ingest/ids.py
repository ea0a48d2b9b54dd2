"""Identifiers named by alerts, validated at intake (they reach URLs, file names and HTML).

GraceDB names a superevent ``S`` + ``YYMMDD`` + a lower-case suffix
(``S241102br``); mock and test superevents carry a leading ``M`` or ``T``
(``MS181101ab``, ``TS230101a``).  Older GCN notices name a GraceDB *event*
instead: a category letter and a number (``G298048``; G for gravitational-wave
candidates, E external, H hardware injection, M mock, T test, D ...).
See the LIGO/Virgo/KAGRA Public Alerts User Guide, "Data products" and
"GraceDB" sections (emfollow.docs.ligo.org/userguide).
"""

from __future__ import annotations

import re

from gwfollow.errors import AlertSchemaError

SUPEREVENT_ID = re.compile(r"[MT]?S\d{6}[a-z]{1,4}")
EVENT_ID = re.compile(r"[GEHMTD]\d{1,9}")


def is_event_id(text: str) -> bool:
    """True for a GraceDB superevent or event id.

    Examples
    --------
    >>> is_event_id("S241102br"), is_event_id("MS181101ab"), is_event_id("G298048")
    (True, True, True)
    >>> is_event_id("x'><img src=x>"), is_event_id("../../etc/passwd"), is_event_id("S241102br\\n")
    (False, False, False)
    """
    return isinstance(text, str) and bool(SUPEREVENT_ID.fullmatch(text) or EVENT_ID.fullmatch(text))


def check_event_id(value: object, source: str, field: str = "superevent_id") -> str:
    """``value`` if it is a GraceDB id, else :class:`~gwfollow.errors.AlertSchemaError` naming it.

    Parameters
    ----------
    value : object
        The identifier as the alert carried it (not stripped or changed).
    source : str
        Where the alert came from, for the error.
    field : str
        The field's name in the alert, for the error.
    """
    if isinstance(value, str) and is_event_id(value):
        return value
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:40]) + "..."
    raise AlertSchemaError(
        f"{field} {shown} is not a GraceDB superevent id (like S241102br, MS181101ab) or event id (G298048)",
        source=source, hint="the alert is not from the LVK, or is corrupt")
