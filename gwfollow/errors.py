"""Every error gwfollow raises on purpose, in one tree.

Each error subclasses :class:`GwfollowError` and the builtin it refines
(a malformed file is also a ``ValueError``), carries the context needed to
act on it (``source``, ``column``, ...) and a ``hint`` that tells the user
what to do.  The command-line tools print ``str(error)`` on one line and
exit with status 2.
"""

from __future__ import annotations


class GwfollowError(Exception):
    """Base of all gwfollow errors.

    Parameters
    ----------
    message : str
        What went wrong, naming the bad value.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(GwfollowError, ValueError):
    """A configuration file or value is invalid."""


class SkyMapError(GwfollowError, ValueError):
    """A sky map cannot be used.

    Attributes
    ----------
    source : str
        File name or a description of the bytes (``"<bytes>"``).
    column : str or None
        The offending column, when one is to blame.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<bytes>",
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = source if column is None else f"{source}, column {column}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.source = source
        self.column = column


class CorruptSkyMapError(SkyMapError):
    """The bytes are not a readable FITS file (truncated, bad gzip, bad header)."""


class UnsupportedSkyMapError(SkyMapError):
    """A valid FITS file that is not a HEALPix sky map gwfollow can read."""


class MissingColumnError(SkyMapError, KeyError):
    """A required column (UNIQ, PROBDENSITY, PROB ...) is absent."""

    def __str__(self) -> str:  # KeyError would quote the message
        return GwfollowError.__str__(self)


class InvalidValueError(SkyMapError):
    """NaN, infinite or negative values where probabilities are expected."""


class InvalidCellsError(SkyMapError):
    """UNIQ values that are not HEALPix cells, or cells that overlap."""


class NormalizationError(SkyMapError):
    """The probabilities sum far from 1."""


class AlertError(GwfollowError, ValueError):
    """An alert message cannot be used.

    Attributes
    ----------
    source : str
        Where the message came from (``kafka:igwn.gwalert[0]@42``, a file
        name, ``http``...).
    """

    def __init__(self, message: str, *, source: str = "<message>", hint: str | None = None) -> None:
        super().__init__(f"{source}: {message}", hint=hint)
        self.source = source
        self.reason = message


class AlertParseError(AlertError):
    """Not JSON / XML / FITS, truncated, or bad base64."""


class AlertSchemaError(AlertError):
    """Well-formed but not a valid IGWN alert (JSON schema) or LVK VOEvent."""


class FetchError(GwfollowError, OSError):
    """Downloading something (a sky map) failed.

    Attributes
    ----------
    url : str
    status : int or None
        HTTP status, when the server answered.
    transient : bool
        True when trying again later may succeed (time-outs, 5xx, 429).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None,
                 transient: bool = True, hint: str | None = None) -> None:
        super().__init__(f"{url}: {message}", hint=hint)
        self.url = url
        self.status = status
        self.transient = transient


class StoreError(GwfollowError, RuntimeError):
    """The database cannot be opened, migrated or written."""


class UnknownEventError(GwfollowError, LookupError):
    """A message refers to a superevent that was never seen (e.g. a retraction)."""


class MocError(GwfollowError, ValueError):
    """A MOC or a MOC operation's argument is invalid (bad level, format...)."""


class CatalogError(GwfollowError, ValueError):
    """A catalogue cannot be read or lacks a required column."""


class CoverageError(GwfollowError, ValueError):
    """A coverage cannot be read, fetched or used.

    Attributes
    ----------
    source : str
        File name, MOCServer identifier or ``"<rows>"``.
    reason : str
        What went wrong, without the source.
    """

    def __init__(self, message: str, *, source: str = "<coverage>", hint: str | None = None) -> None:
        super().__init__(f"{source}: {message}", hint=hint)
        self.source = source
        self.reason = message


class FieldsError(GwfollowError, ValueError):
    """A telescope's grid or field of view is unusable."""


class ObservabilityError(GwfollowError, ValueError):
    """A window, step, order or target list that observability cannot use."""


class PlanError(GwfollowError, ValueError):
    """Observation-plan parameters, a start time, a telescope or a site that a plan cannot use
    (permanent: the same request fails again)."""

    transient = False


class RankError(GwfollowError, ValueError):
    """Bad ranking parameters."""


class ReportError(GwfollowError, ValueError):
    """A report cannot be written (bad format, bad path)."""


class TapError(GwfollowError, OSError):
    """A TAP service could not answer a query.

    Attributes
    ----------
    url : str
        The service's base URL.
    status : int or None
        HTTP status, when the service answered.
    service_message : str or None
        The service's own explanation (VOTable ``QUERY_STATUS`` ERROR text,
        UWS error summary), when it gave one.
    transient : bool
        True when trying again later may succeed.
    """

    transient_default = False

    def __init__(self, message: str, *, url: str, status: int | None = None,
                 service_message: str | None = None, transient: bool | None = None,
                 hint: str | None = None) -> None:
        super().__init__(f"{url}: {message}", hint=hint)
        self.url = url
        self.status = status
        self.service_message = service_message
        self.transient = self.transient_default if transient is None else transient


class TapUnavailableError(TapError):
    """The service is down, unreachable or failing (connection refused, HTTP 5xx)."""

    transient_default = True


class TapTimeoutError(TapUnavailableError, TimeoutError):
    """The service did not answer within ``timeout_s``."""


class TapQueryError(TapError, ValueError):
    """The service rejected the query (unknown table or column, bad ADQL...)."""


class TapFormatError(TapError, ValueError):
    """The answer is not a readable VOTable."""


class TapOverflowError(TapError):
    """The result was truncated at MAXREC even by an asynchronous query."""


class SampError(GwfollowError, ConnectionError):
    """Products cannot be sent over SAMP (no hub, an unknown event or telescope).

    Attributes
    ----------
    transient : bool
        True when trying again may succeed (no hub running yet: start TOPCAT or Aladin).
    """

    def __init__(self, message: str, *, transient: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


class SkyMapWarning(UserWarning):
    """A sky map was read but something about it deserves attention."""
