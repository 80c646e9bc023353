"""A workspace: one folder that holds a fraud team's config, feature definitions and event store.

Layout (created by :meth:`Workspace.init`)::

    fraudops.toml            configuration (name, default tenant, store settings)
    features/                feature definitions, plain Python (``fraudops init`` writes a
                             starter set)
    mappings/                ingestion mappings (TOML)
    events/transactions/     canonical transactions, Parquet, one folder per UTC day
    events/labels/           label events, Parquet, one folder per UTC day of label_time
    quarantine/<batch>/      rows that failed validation, with row, field and reason
    reports/                 profiles and other generated reports
    ingest_log.jsonl         one line per ingestion batch (the reconciliation)
"""

from __future__ import annotations

import fcntl
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._errors import WorkspaceError

CONFIG_FILE = "fraudops.toml"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_CONFIG_TEMPLATE = """\
# fraudops workspace configuration. Documented in docs/workspace.md.
[workspace]
name = "{name}"
format_version = {version}
# Tenant given to events whose mapping names no tenant.
default_tenant = "{tenant}"
"""



@dataclass(frozen=True)
class WorkspaceConfig:
    """The parsed ``fraudops.toml``."""

    name: str
    default_tenant: str = "default"
    format_version: int = FORMAT_VERSION


def validate_name(value: str, *, field: str) -> str:
    """Check a tenant or workspace name: it becomes part of paths and keys."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise WorkspaceError(
            f"{field} = {value!r}: must be 1-64 characters of letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )
    return value


class Workspace:
    """Paths and configuration of one workspace; every command acts through one of these.

    Examples
    --------
    >>> import tempfile
    >>> ws = Workspace.init(Path(tempfile.mkdtemp()) / "acme", name="acme")
    >>> ws.config.default_tenant
    'default'
    >>> Workspace.open(ws.root).config.name
    'acme'
    """

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config

    # -- creation and discovery -------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str, *, name: str | None = None,
             default_tenant: str = "default") -> Workspace:
        """Create a new workspace in ``root`` (which must not hold one already)."""
        root = Path(root).absolute()
        if (root / CONFIG_FILE).exists():
            raise WorkspaceError(f"{root} already holds a workspace ({CONFIG_FILE} exists)")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        name = validate_name(name or root.name, field="workspace name")
        validate_name(default_tenant, field="default_tenant")
        for sub in ("features", "mappings", "events/transactions", "events/labels",
                    "quarantine", "reports"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / CONFIG_FILE).write_text(
            _CONFIG_TEMPLATE.format(name=name, version=FORMAT_VERSION, tenant=default_tenant))
        return cls.open(root)

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        """Open the workspace whose config file is in ``root``."""
        root = Path(root).absolute()
        path = root / CONFIG_FILE
        if not path.is_file():
            raise WorkspaceError(
                f"{root} is not a fraudops workspace (no {CONFIG_FILE});"
                " create one with 'fraudops init DIR' or pass --workspace DIR")
        return cls(root, _read_config(path))

    @classmethod
    def find(cls, start: Path | str | None = None) -> Workspace:
        """Open the workspace in ``start`` (default: the current folder) or its nearest parent."""
        here = Path(start or os.getcwd()).absolute()
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                return cls.open(folder)
        raise WorkspaceError(
            f"no fraudops workspace in {here} or its parents;"
            " create one with 'fraudops init DIR' or pass --workspace DIR")

    # -- paths ------------------------------------------------------------------------------
    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def mappings_dir(self) -> Path:
        return self.root / "mappings"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def ingest_log(self) -> Path:
        return self.root / "ingest_log.jsonl"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's write lock; a second writer fails at once instead of interleaving."""
        path = self.root / ".fraudops.lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise WorkspaceError(
                    f"workspace {self.root} is being written by another fraudops process"
                    f" (pid {holder}); retry when it has finished") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, name={self.config.name!r})"


def _read_config(path: Path) -> WorkspaceConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path}: not valid TOML: {exc}") from None
    section = raw.get("workspace")
    if not isinstance(section, dict):
        raise WorkspaceError(f"{path}: missing the [workspace] table")
    unknown = set(section) - {"name", "default_tenant", "format_version"}
    if unknown:
        raise WorkspaceError(f"{path}: unknown key(s) in [workspace]: {sorted(unknown)}")
    version = section.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise WorkspaceError(
            f"{path}: format_version = {version!r}, this fraudops reads version {FORMAT_VERSION}")
    name = validate_name(section.get("name", path.parent.name), field="[workspace] name")
    tenant = validate_name(section.get("default_tenant", "default"),
                           field="[workspace] default_tenant")
    return WorkspaceConfig(name=name, default_tenant=tenant, format_version=version)
