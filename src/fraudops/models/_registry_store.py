"""Where the registry lives: tracking URIs, the workspace default, reachability and error mapping.

The registry itself (``_registry.py``) talks to MLflow; this module decides *which* MLflow store
and turns MLflow's failures into :class:`RegistryError` messages that name the store and the fix.
Nothing here imports MLflow at module import time: importing it costs about a second, and
serving or the feature engine should not pay that just because ``fraudops.models`` was imported.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fraudops.core import FraudopsError, Workspace

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

#: Seconds to wait for a tracking server or database before calling it unreachable.
CONNECT_TIMEOUT_SECONDS = 5
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")


class RegistryError(FraudopsError):
    """The model registry refused a request: unknown model, version or role, or a bad input."""


class RegistryUnavailable(RegistryError):
    """The registry's store (SQLite file, database or MLflow tracking server) cannot be reached."""


def workspace_tracking_uri(workspace: Workspace) -> str:
    """The embedded default: ``sqlite:///<workspace>/mlflow/mlflow.db``."""
    return f"sqlite:///{workspace.root / 'mlflow' / 'mlflow.db'}"


def workspace_artifact_root(workspace: Workspace) -> Path:
    """Where run artifacts go for a workspace: ``<workspace>/mlflow/artifacts``."""
    return workspace.root / "mlflow" / "artifacts"


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***``, for messages and tables."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    credentials, _, host = rest.partition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def is_database_uri(uri: str) -> bool:
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    return scheme in _DATABASE_SCHEMES


def check_reachable(uri: str) -> None:
    """Fail fast with :class:`RegistryUnavailable` when the store cannot be reached.

    MLflow retries an unreachable database ten times with exponential back-off (minutes) and an
    HTTP server seven times; a command line should answer in seconds.
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in _DATABASE_SCHEMES:
        _check_database(uri)
    elif scheme in ("http", "https"):
        _check_server(uri)


def _check_sqlite(uri: str) -> None:
    path = uri.removeprefix("sqlite:///")
    if path.startswith(":memory:") or not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryUnavailable(
            f"registry store {uri}: cannot create its folder: {exc.strerror}") from None


def _check_database(uri: str) -> None:
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if uri.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=sqlalchemy.NullPool)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise RegistryUnavailable(
            f"registry store {redact(uri)}: not a usable database URI ({exc}); for PostgreSQL use"
            " postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (needs psycopg)") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise RegistryUnavailable(
            f"registry store {redact(uri)} is unreachable: {reason}") from None
    finally:
        engine.dispose()


def _check_server(uri: str) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_SECONDS):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise RegistryUnavailable(
                f"MLflow tracking server {redact(uri)} answered {exc.code} on /health") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailable(
            f"MLflow tracking server {redact(uri)} is unreachable: {reason};"
            " start it with 'mlflow server' or pass another --tracking-uri") from None


def make_client(uri: str) -> MlflowClient:
    """An MLflow client for tracking and registry on the same store; telemetry off."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    check_reachable(uri)
    from mlflow.tracking import MlflowClient

    database = _sqlite_file(uri)
    if database is not None and not database.exists():
        _forget_cached_stores(uri)

    with mlflow_errors(f"registry store {redact(uri)}"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # opens (and if new, migrates) the store now
    return client


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _forget_cached_stores(uri: str) -> None:
    """MLflow caches one store and one database engine per URI for the process; a new
    database at a URI used before (a workspace deleted and created again) needs fresh ones."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    registry = registry_utils._get_store_registry()  # type: ignore[no-untyped-call]
    for store_registry in (tracking_utils._tracking_store_registry, registry):
        cached = getattr(store_registry._get_store_with_resolved_uri, "cache_clear", None)
        if cached is not None:
            cached()
    for store in (TrackingStore, RegistryStore):
        engine = store._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Turn an ``MlflowException`` into a :class:`RegistryError` that names ``what`` failed."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        message = str(exc.message if hasattr(exc, "message") else exc).strip()
        first = message.splitlines()[0] if message else type(exc).__name__
        raise RegistryError(f"{what}: {first}") from exc
