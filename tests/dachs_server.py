"""A real, private GAVO DaCHS TAP service for the test-suite.

:class:`DachsServer` runs its own DaCHS instance (Debian's
``gavodachs2-server``) per test session: its own settings file
(``GAVOSETTINGS``), its own root directory in a temporary directory, a
freshly created PostgreSQL database, a server bound to 127.0.0.1 on a free
port, all run as the ``dachsroot`` user.  It publishes the galaxy tables
``gwf.glade`` and ``gwf.gwemopt`` (resource ``gwf/q``) from
``../shared/data/catalogs`` -- read in place, never copied -- and waits
until a TAP query answers.  :meth:`DachsServer.stop` stops the server, drops
the database, removes the directory and stops the PostgreSQL cluster if it
started it.

:func:`ensure_dachs` installs the packages when they are missing (root
only): ``postgresql`` first, then the cluster is started by hand, then
``gavodachs2-server`` -- its maintainer scripts need a *running*
PostgreSQL, and service starts (``invoke-rc.d``) are blocked during
installs on containers and CI machines.  The apt cache keeps re-runs fast.

Notes
-----
DaCHS 2.7 (Debian 12) behaviour tests written against it must respect:

* ``dachs init`` cannot be re-run on an initialised database; each
  instance creates a new one (and drops it afterwards).
* ``dachs init`` (re)sets the passwords of the cluster-wide roles
  ``gavoadmin``, ``gavo`` and ``untrusted`` to those of the instance's
  profiles, generating new ones when the profiles do not exist.  The
  instance therefore reuses the profiles of the system instance
  (``/var/gavo/etc``) when there is one, so the system instance keeps
  working.
* TAP_SCHEMA and VOSI tables list regular column names in lower case
  (``pgc``) but ``SELECT *`` writes the RD's spelling (``PGC``); a column
  selected by name comes back spelled as in the query.
* The capabilities declare an ADQL ``MOC`` function
  (``ivo://org.gavo.dc/std/exts#extra-adql-keywords``) and
  ``CONTAINS(POINT, MOC('3/389'))`` works with pgsphere 1.1.
* Default MAXREC is 2000 rows (hard limit 20,000,000); a truncated result
  has ``<INFO name="QUERY_STATUS" value="OVERFLOW"/>`` after the table.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "CATALOGS",
    "DachsUnavailable",
    "DachsServer",
    "DachsStartError",
    "cache_dir",
    "ensure_dachs",
    "free_port",
]

#: Tables published by the test resource, and the shared CSV each one loads.
CATALOGS = {
    "gwf.glade": "GLADEplus_HyperLedaSizes_cone10deg_NGC4993.csv",
    "gwf.gwemopt": "gwemopt_catalog_glade_S190814bv.csv",
}

DACHS_USER = "dachsroot"
PG_VERSION = "15"
PG_CLUSTER = "main"
SYSTEM_PROFILES = Path("/var/gavo/etc")


class DachsUnavailable(RuntimeError):
    """DaCHS is not installed and cannot be installed here (tests skip, or fail under CI)."""


class DachsStartError(RuntimeError):
    """The private DaCHS instance could not be set up or did not answer in time."""


def cache_dir() -> Path:
    """``$GWFOLLOW_TEST_CACHE`` or ``~/.cache/gwfollow``: locks and install logs."""
    base = os.environ.get("GWFOLLOW_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gwfollow")
    p = Path(base) / "dachs"
    p.mkdir(parents=True, exist_ok=True)
    return p


def free_port(host: str = "127.0.0.1") -> int:
    """A currently unused TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _run(cmd: Sequence[str], *, log: Path | None = None, timeout: float = 900, env: dict[str, str] | None = None,
         cwd: str | None = None) -> str:
    """Run ``cmd``; raise DachsStartError with its output when it fails."""
    t0 = time.monotonic()
    p = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                       env=env, cwd=cwd)
    out = p.stdout + p.stderr
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}   # {time.monotonic() - t0:.1f} s, status {p.returncode}\n{out}\n")
    if p.returncode != 0:
        raise DachsStartError(f"{' '.join(cmd)} failed with status {p.returncode}:\n{out[-3000:]}")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _installed(package: str) -> bool:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def cluster_running() -> bool:
    """Whether PostgreSQL cluster ``15/main`` is online."""
    p = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == PG_VERSION and f[1] == PG_CLUSTER:
            return f[3].startswith("online")
    return False


def start_cluster(log: Path | None = None) -> None:
    """``pg_ctlcluster 15 main start`` (by hand: service starts may be blocked)."""
    _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "start"], log=log, timeout=120)


def stop_cluster(log: Path | None = None) -> None:
    """``pg_ctlcluster 15 main stop``."""
    _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "stop"], log=log, timeout=120)


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive file lock in :func:`cache_dir` (pytest-xdist workers share it)."""
    with (cache_dir() / name).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_dachs() -> list[str]:
    """Install ``gavodachs2-server`` when missing; return the commands run (empty when none).

    Commands (as root, non-interactive)::

        apt-get update                                  # once
        apt-get install -y postgresql                   # if missing
        pg_ctlcluster 15 main start                     # if not online
        apt-get install -y gavodachs2-server
        pg_ctlcluster 15 main stop                      # if it was not online before

    Raises
    ------
    DachsUnavailable
        Not root, no ``apt-get``, or the installation failed.
    """
    if _installed("gavodachs2-server") and shutil.which("dachs"):
        return []
    if os.geteuid() != 0:
        raise DachsUnavailable("gavodachs2-server is not installed and installing it needs root "
                               "(sudo apt-get install gavodachs2-server)")
    if not shutil.which("apt-get"):
        raise DachsUnavailable("gavodachs2-server is not installed and there is no apt-get here")
    done: list[str] = []
    log = cache_dir() / "install.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _lock("install.lock"):
        if _installed("gavodachs2-server") and shutil.which("dachs"):
            return []
        started = False
        try:
            for cmd, when in (
                (["apt-get", "update", "-q"], True),
                (["apt-get", "install", "-y", "-q", "postgresql"], not _installed("postgresql")),
            ):
                if when:
                    _run(cmd, log=log, env=env, timeout=1800)
                    done.append(" ".join(cmd))
            if not cluster_running():
                start_cluster(log)
                started = True
                done.append(f"pg_ctlcluster {PG_VERSION} {PG_CLUSTER} start")
            cmd = ["apt-get", "install", "-y", "-q", "gavodachs2-server"]
            _run(cmd, log=log, env=env, timeout=1800)
            done.append(" ".join(cmd))
        except (DachsStartError, subprocess.TimeoutExpired, OSError) as exc:
            raise DachsUnavailable(f"installing gavodachs2-server failed (log: {log}): {exc}") from exc
        finally:
            if started:
                with contextlib.suppress(DachsStartError):
                    stop_cluster(log)
                    done.append(f"pg_ctlcluster {PG_VERSION} {PG_CLUSTER} stop")
    return done


RD_TEMPLATE = """<resource schema="gwf">
  <meta name="title">gwfollow test galaxies</meta>
  <meta name="description">Galaxy catalogues for gwfollow's TAP tests.</meta>
  <meta name="creationDate">2026-01-01T00:00:00</meta>
  <meta name="subject">galaxies</meta>

  <table id="glade" onDisk="True" adql="True" primary="row_no">
    <meta name="description">GLADE+ galaxies within 10 deg of NGC 4993.</meta>
    <column name="row_no" type="integer" required="True" description="Row of the CSV file"/>
    <column name="RAJ2000" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"/>
    <column name="DEJ2000" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"/>
    <column name="Dist" type="double precision" unit="Mpc"/>
    <column name="Bmag" type="double precision" unit="mag"/>
    <column name="z_best" type="double precision"/>
    <column name="glade" type="text" description="GLADE+ number"/>
    <column name="GWGC" type="text"/>
    <column name="PGC" type="text"/>
    <column name="HyperLEDA" type="text"/>
  </table>

  <table id="gwemopt" onDisk="True" adql="True" primary="row_no">
    <meta name="description">gwemopt's GLADE galaxies for S190814bv.</meta>
    <column name="row_no" type="integer" required="True" description="Row of the CSV file"/>
    <column name="ra" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"/>
    <column name="dec" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"/>
    <column name="distmpc" type="double precision" unit="Mpc"/>
    <column name="magb" type="double precision" unit="mag"/>
    <column name="magk" type="double precision" unit="mag"/>
    <column name="z" type="double precision"/>
    <column name="GWGC" type="text"/>
    <column name="PGC" type="text"/>
    <column name="HyperLEDA" type="text"/>
    <column name="quoted/2MASS" type="text"/>
  </table>

  <data id="import_glade">
    <sources>data/glade.csv</sources>
    <embeddedGrammar>
      <iterator>
        <code>
          import csv
          def num(s):
            try:
              return float(s)
            except (TypeError, ValueError):
              return None
          with open(self.sourceToken, newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
              yield {"row_no": i, "RAJ2000": num(r["RAJ2000"]),
                "DEJ2000": num(r["DEJ2000"]), "Dist": num(r["Dist"]), "Bmag": num(r["Bmag"]),
                "z_best": num(r["z_best"]), "glade": r["GLADE+"], "GWGC": r["GWGC"],
                "PGC": r["PGC"], "HyperLEDA": r["HyperLEDA"]}
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="glade"/>
  </data>

  <data id="import_gwemopt">
    <sources>data/gwemopt.csv</sources>
    <embeddedGrammar>
      <iterator>
        <code>
          import csv
          def num(s):
            try:
              return float(s)
            except (TypeError, ValueError):
              return None
          with open(self.sourceToken, newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
              yield {"row_no": i, "ra": num(r["ra"]), "dec": num(r["dec"]),
                "distmpc": num(r["distmpc"]), "magb": num(r["magb"]), "magk": num(r["magk"]),
                "z": num(r["z"]), "GWGC": r["GWGC"], "PGC": r["PGC"],
                "HyperLEDA": r["HyperLEDA"], "2MASS": r["2MASS"]}
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="gwemopt"/>
  </data>
</resource>
"""


class DachsServer:
    """A private DaCHS TAP service on a free loopback port, as a context manager.

    Parameters
    ----------
    catalog_dir : path
        Directory holding the CSV files of :data:`CATALOGS` (linked, not copied).
    startup_timeout : float
        Seconds to wait for the first TAP answer.

    Attributes
    ----------
    url : str
        TAP base URL, ``http://127.0.0.1:<port>/tap``.
    setup_seconds : dict
        Seconds spent per step (``createdb``, ``init``, ``imp``, ``serve``).
    commands : list of str
        Every command run, in order (for reports and debugging).
    """

    def __init__(self, catalog_dir: str | os.PathLike[str], *, startup_timeout: float = 90.0) -> None:
        self.catalog_dir = Path(catalog_dir)
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.dbname = f"gwfollow_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.workdir: Path | None = None
        self.setup_seconds: dict[str, float] = {}
        self.commands: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._started_cluster = False  # registered as a user of the cluster
        self._created_db = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/tap"

    @property
    def root(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "root"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "setup.log"

    def _as_dachs(self, *args: str) -> list[str]:
        assert self.workdir is not None
        cmd = ["env", f"GAVOSETTINGS={self.workdir / 'gavo.rc'}", "dachs", *args]
        if pwd.getpwuid(os.geteuid()).pw_name != DACHS_USER:
            cmd = ["runuser", "-u", DACHS_USER, "--", *cmd]
        return cmd

    def _step(self, name: str, cmd: list[str], timeout: float = 300) -> str:
        t0 = time.monotonic()
        self.commands.append(" ".join(cmd))
        try:
            return _run(cmd, log=self.log_path, timeout=timeout, cwd=str(self.workdir))
        finally:
            self.setup_seconds[name] = self.setup_seconds.get(name, 0.0) + time.monotonic() - t0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> DachsServer:
        """Create the database and the instance, import the tables, serve, wait."""
        if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != DACHS_USER:
            raise DachsUnavailable("the private DaCHS instance runs as dachsroot: run the tests as root")
        for name in CATALOGS.values():
            if not (self.catalog_dir / name).exists():
                raise DachsStartError(f"{self.catalog_dir / name} is missing")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="gwfollow-dachs-"))
        self.workdir.chmod(0o755)
        self._acquire_cluster()
        self.port = free_port(self.host)
        (self.workdir / "gavo.rc").write_text(
            "[general]\n"
            f"rootDir: {self.root}\n"
            "gavoGroup: gavo\n"
            "[db]\n"
            f"profilePath: {self.root / 'etc'}\n"
            "[web]\n"
            f"bindAddress: {self.host}\n"
            f"serverPort: {self.port}\n"
            f"serverURL: http://{self.host}:{self.port}\n"
        )
        etc = self.root / "etc"
        etc.mkdir(parents=True)
        (etc / "dsn").write_text(f"database = {self.dbname}\nhost = localhost\nport = 5432\n")
        for profile in ("feed", "trustedquery", "untrustedquery"):
            src = SYSTEM_PROFILES / profile
            if src.exists():  # keep the cluster-wide role passwords unchanged
                shutil.copy(src, etc / profile)
        res = self.root / "inputs" / "gwf"
        (res / "data").mkdir(parents=True)
        (res / "q.rd").write_text(RD_TEMPLATE)
        (res / "data" / "glade.csv").symlink_to(self.catalog_dir / CATALOGS["gwf.glade"])
        (res / "data" / "gwemopt.csv").symlink_to(self.catalog_dir / CATALOGS["gwf.gwemopt"])
        _run(["chown", "-R", f"{DACHS_USER}:gavo", str(self.workdir)])
        self._step("createdb", ["runuser", "-u", "postgres", "--", "createdb", "-O", DACHS_USER,
                                "--encoding=UTF-8", self.dbname])
        self._created_db = True
        self._step("init", self._as_dachs("init", "-d", f"dbname={self.dbname}"))
        self._step("imp", self._as_dachs("imp", "gwf/q"))
        t1 = time.monotonic()
        cmd = self._as_dachs("serve", "debug")
        self.commands.append(" ".join(cmd))
        log = (self.workdir / "serve.log").open("ab")
        self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(self.workdir), start_new_session=True)
        log.close()
        self._wait_ready()
        self.setup_seconds["serve"] = time.monotonic() - t1
        self.setup_seconds["total"] = time.monotonic() - t0

    # PostgreSQL is shared by the instances of parallel pytest-xdist workers:
    # a user list under a file lock; the last user stops the cluster if an
    # instance started it.
    def _users(self) -> set[str]:
        f = cache_dir() / "cluster.users"
        users = set(f.read_text().split()) if f.exists() else set()
        return {u for u in users if _pid_alive(int(u.split(":")[0]))}

    def _acquire_cluster(self) -> None:
        token = f"{os.getpid()}:{self.dbname}"
        with _lock("cluster.lock"):
            users = self._users()
            flag = cache_dir() / "cluster.started-by-tests"
            if not users:
                flag.unlink(missing_ok=True)
            if not cluster_running():
                self.commands.append(f"pg_ctlcluster {PG_VERSION} {PG_CLUSTER} start")
                start_cluster(self.log_path)
                flag.write_text("1")
            (cache_dir() / "cluster.users").write_text("\n".join(sorted(users | {token})))
            self._started_cluster = True

    def _release_cluster(self) -> None:
        token = f"{os.getpid()}:{self.dbname}"
        with _lock("cluster.lock"):
            users = self._users() - {token}
            (cache_dir() / "cluster.users").write_text("\n".join(sorted(users)))
            flag = cache_dir() / "cluster.started-by-tests"
            if not users and flag.exists():
                flag.unlink()
                with contextlib.suppress(DachsStartError, subprocess.TimeoutExpired):
                    stop_cluster()

    def query_url(self, adql: str) -> str:
        q = urllib.parse.urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql})
        return f"{self.url}/sync?{q}"

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DachsStartError(f"dachs serve exited with status {self._process.returncode}:\n"
                                      f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.query_url("SELECT TOP 1 * FROM gwf.glade"), timeout=5) as r:
                    if r.status == 200 and b"<TABLE" in r.read():
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise DachsStartError(f"no TAP answer from {self.url} within {self.startup_timeout:g} s "
                              f"(last error: {last!r}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("setup.log", "serve.log"):
            with contextlib.suppress(OSError, AssertionError):
                out += (self.workdir / name).read_text(errors="replace").splitlines()[-lines:]  # type: ignore[operator]
        return "\n".join(out)

    def stop(self) -> None:
        """Stop the server, drop the database, remove the directory, stop PostgreSQL if started here."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # our own session: runuser and dachs
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._created_db:
            self._created_db = False
            with contextlib.suppress(DachsStartError, subprocess.TimeoutExpired):
                _run(["runuser", "-u", "postgres", "--", "dropdb", "--if-exists", "--force", self.dbname],
                     timeout=60)
        if self._started_cluster:
            self._started_cluster = False
            self._release_cluster()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> DachsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DachsServer({self.url}, db={self.dbname})"
