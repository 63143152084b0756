"""The results store in a PostgreSQL database that many workers share: :class:`PostgresStore`.

    store: postgresql://ann@db.example.org:5432/results     # a study's YAML (password: PGPASSWORD)

    with open_store("postgresql://ann@db/results", study="seed-study") as store:
        ...                                                 # as with the SQLite store

The same tables, queries and rules as the SQLite store
(:class:`~wattwise.experiment.store_base.Store` holds them once); this module only connects, runs
transactions and locks. The tables live in the database's :data:`SCHEMA` schema (a PostgreSQL
namespace), and an Optuna search keeps its tables in :data:`OPTUNA_SCHEMA` (:func:`optuna_storage`),
so that neither meets the other's ``trials`` table, whatever the database's ``search_path``. One
database holds one study, as one file does.

Transactions: every write is one transaction (committed or rolled back whole). A write about a
trial first takes a transaction-scoped advisory lock on the trial's id (``pg_advisory_xact_lock``):
a trial that no row holds yet has no row to lock (``SELECT ... FOR UPDATE`` would lock nothing),
and the lock makes two claims of one trial run one after the other, the second seeing what the
first committed (its attempt, its ``ok`` record). Writes of other trials do not wait; the study's
metadata and the schema have lock keys of their own. A write waits up to ``timeout_s`` for a
lock (``lock_timeout``). Reads run outside transactions: each sees what was committed when it ran.

Passwords: a URL's password is used to connect and never shown. :attr:`PostgresStore.location`,
``repr`` and every message carry :func:`masked_url`; a study records its URL with
:func:`url_without_password` (give the password with ``PGPASSWORD`` or ``~/.pgpass``).

psycopg 3 is imported on use (``pip install 'wattwise[postgres]'``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from wattwise.experiment.store_base import Store, StoreError, is_postgres_url
from wattwise.experiment.store_schema import (
    CREATE_INDEXES,
    CREATE_LEASES,
    CREATE_META,
    META_UPSERT,
    SCHEMA_VERSION,
    create_trials,
)

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

#: The PostgreSQL schema (namespace) that holds the store's ``meta`` and ``trials`` tables.
SCHEMA = "wattwise"
#: The schema that holds the tables of a study's Optuna search (:func:`optuna_storage`).
OPTUNA_SCHEMA = "wattwise_optuna"
#: SQLite's column types as PostgreSQL stores them: 64-bit integers and doubles.
TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION"}
#: ``trials`` with the order the trials were first begun in (SQLite's ``rowid``).
CREATE_TRIALS = create_trials(TYPES, "seq BIGINT GENERATED ALWAYS AS IDENTITY")
INSTALL_HINT = "pip install 'wattwise[postgres]'"
_SCHEMA_LOCK = "schema"


class PostgresStore(Store):
    """A study's results in a PostgreSQL database (its tables created on first use).

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?param=value...]`` (libpq's URL;
            ``postgres://`` too).
        study, config_yaml, timeout_s, read_only: As
            :class:`~wattwise.experiment.store.ResultsStore` (``timeout_s`` also bounds the
            connection attempt).

    Raises:
        StoreError: psycopg is missing, the server cannot be reached, the database holds no
            store (``read_only``), one of a newer layout, or another study's.
        ValueError: Not a PostgreSQL URL, or ``read_only`` with ``study`` or ``config_yaml``.
    """

    _order = "seq"
    _elsewhere = "database"

    def __init__(
        self,
        url: str,
        *,
        study: str | None = None,
        config_yaml: str | None = None,
        timeout_s: float = 30.0,
        read_only: bool = False,
    ) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL: {masked_url(url)}")
        if read_only and (study is not None or config_yaml is not None):
            raise ValueError("a read-only store takes no study or config_yaml to record")
        super().__init__()
        self._url = url
        self.location = masked_url(url)
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._inherited: list[Any] = []  # a forked parent's connections: never closed here
        self._connection()
        if study is not None or config_yaml is not None:
            self._claim(study, config_yaml)

    @staticmethod
    def exists(url: str, *, timeout_s: float = 30.0) -> bool:
        """The database at ``url`` holds a results store (reading only)."""
        with _connect(url, timeout_s) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.meta",)).fetchone()
        return bool(row and row[0])

    # --- connection, transactions ------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and self._pid == os.getpid() and not conn.broken and not conn.closed:
            return conn
        if conn is not None and self._pid != os.getpid():
            self._inherited.append(conn)  # closing it would end the parent's session
        elif conn is not None:
            with suppress(Exception):
                conn.close()
        self._conn = None
        self._pid = os.getpid()
        conn = _connect(self._url, self.timeout_s)
        try:
            conn.execute(f"SET search_path TO {SCHEMA}")
            lock_ms = max(1, round(self.timeout_s * 1000))
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_ms}ms",))
            if self.read_only:
                conn.execute("SET default_transaction_read_only = on")
            self._conn = conn
            if self.read_only:
                self._check_layout()
            else:
                self._create_schema()
        except BaseException as err:
            self._conn = None
            with suppress(Exception):
                conn.close()
            if _is_psycopg_error(err):
                raise StoreError(
                    f"{self.location} is not a usable wattwise results store: {_line(err)}"
                ) from None
            raise
        return conn

    def _tables(self) -> tuple[bool, bool, bool]:
        """Whether ``meta``, ``trials`` and ``leases`` exist."""
        names = (f"{SCHEMA}.meta", f"{SCHEMA}.trials", f"{SCHEMA}.leases")
        found = ", ".join("to_regclass(?) IS NOT NULL" for _ in names)
        row = self._query(f"SELECT {found}", names)
        return bool(row[0][0]), bool(row[0][1]), bool(row[0][2])

    def _check_layout(self) -> None:
        if not all(self._tables()[:2]):  # a reader needs no leases
            raise StoreError(f"{self.location} is not a wattwise results store (no trials table)")
        rows = self._query("SELECT value FROM meta WHERE key = 'schema_version'")
        if not rows:
            raise StoreError(f"{self.location} is not a wattwise results store (no schema version)")
        self._refuse_newer(rows[0][0])

    def _create_schema(self) -> None:
        with self._write(_SCHEMA_LOCK) as conn:
            if not all(self._tables()):  # no CREATE needed (or allowed) once they exist
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                for statement in (CREATE_META, CREATE_TRIALS, *CREATE_INDEXES, CREATE_LEASES):
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(META_UPSERT, ("schema_version", str(SCHEMA_VERSION)))
                conn.execute(META_UPSERT, ("created_unix_s", repr(time.time())))
            else:
                self._refuse_newer(row[0])

    @contextmanager
    def _write(self, key: str | None = None) -> Iterator[_Sql]:
        """One transaction; with ``key``, holding that key's advisory lock until it ends."""
        if self.read_only:
            raise StoreError(f"results store {self.location} is open read-only")
        psycopg = _psycopg()
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    if key is not None:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(key),))
                    yield _Sql(conn)
            except psycopg.errors.LockNotAvailable as err:
                raise StoreError(
                    f"results store {self.location} stayed locked by another writer for "
                    f"{self.timeout_s:g} s ({_line(err)})"
                ) from None
            except psycopg.Error as err:
                raise StoreError(
                    f"cannot write results store {self.location}: {_line(err)}"
                ) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        psycopg = _psycopg()
        with self._lock:
            try:
                return _Sql(self._connection()).execute(sql, params).fetchall()
            except psycopg.Error as err:
                raise StoreError(
                    f"cannot read results store {self.location}: {_line(err)}"
                ) from None

    def _table_columns(self) -> list[str]:
        rows = self._query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'trials' ORDER BY ordinal_position",
            (SCHEMA,),
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        """Closes the connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with suppress(Exception):
                    self._conn.close()
            self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"PostgresStore({self.location!r}{mode})"


class _Sql:
    """A psycopg connection that runs the store's SQL, written with ``?`` placeholders (SQLite's
    and the shared queries'): psycopg's are ``%s``. The queries hold no literal ``?`` or ``%``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params) or None)


def optuna_storage(url: str) -> Any:
    """The Optuna storage of a study stored at ``url``: SQLAlchemy's ``postgresql+psycopg``
    driver on the same database, its tables in :data:`OPTUNA_SCHEMA` (created here), so that
    every worker's sweep shares one search."""
    import optuna

    with _connect(url, 30.0) as conn:
        row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (OPTUNA_SCHEMA,)).fetchone()
        if not (row and row[0]):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
    driver = "postgresql+psycopg://" + url.split("://", 1)[1]
    options = {"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}}
    return optuna.storages.RDBStorage(driver, engine_kwargs=options)


# --- URLs and passwords ----------------------------------------------------------------------


def masked_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    return _with_password(url, "***")


def url_without_password(url: str) -> str:
    """``url`` without its password: what a study records (libpq then reads ``PGPASSWORD`` or
    ``~/.pgpass``)."""
    return _with_password(url, None)


def _with_password(url: str, mask: str | None) -> str:
    scheme, sep, rest = url.partition("://")
    ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    end = min(ends, default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    user, at, hosts = netloc.rpartition("@")
    if at and ":" in user:
        name = user.split(":", 1)[0]
        netloc = (name if mask is None else f"{name}:{mask}") + "@" + hosts
    path, question, query = tail.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        kept = []
        for part in query.split("&"):
            key = part.split("=", 1)[0]
            if unquote(key) == "password":
                if mask is None:
                    continue
                part = f"{key}={mask}"
            kept.append(part)
        query = "&".join(kept)
        tail = path + (f"?{query}" if query else "") + hash_ + fragment
    return f"{scheme}{sep}{netloc}{tail}"


def _passwords(url: str) -> list[str]:
    """The password texts in ``url``, as written and decoded (to scrub from messages)."""
    found = []
    original, masked = url.split("?")[0], masked_url(url).split("?")[0]
    if original != masked:
        userinfo = original.partition("://")[2].rpartition("@")[0]
        found.append(userinfo.split(":", 1)[1])
    for part in url.partition("?")[2].partition("#")[0].split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == "password" and value:
            found.append(value)
    return [p for text in found for p in {text, unquote(text)} if p]


# --- psycopg ---------------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(f"a PostgreSQL results store needs psycopg: {INSTALL_HINT}") from None
    return psycopg


def _connect(url: str, timeout_s: float) -> psycopg.Connection[Any]:
    """An autocommit connection, or :class:`StoreError` in one line without the password."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s)))
    except psycopg.Error as err:
        message = _line(err)
        for password in _passwords(url):
            message = message.replace(password, "***")
        raise StoreError(f"cannot connect to {masked_url(url)}: {message}") from None


def _is_psycopg_error(err: BaseException) -> bool:
    return any(c.__module__.startswith("psycopg") for c in type(err).__mro__[:-1])


def _lock_id(key: str) -> int:
    """The advisory-lock key (a signed 64-bit integer) of a trial id or lock name."""
    digest = hashlib.blake2b(f"wattwise:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _line(err: BaseException) -> str:
    return " ".join(str(err).split())
