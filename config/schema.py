"""The one configuration file, validated before anything is called.

Every section is strict (unknown keys are errors) because a misspelt safety key silently falling back to its
default is exactly the failure a fleet-wide change cannot afford. `load_config` reports every problem at once,
each with the key path where it was found.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

GOOGLE_CONTAINER = "container.googleapis.com:443"
GOOGLE_RESOURCEMANAGER = "cloudresourcemanager.googleapis.com:443"
CLUSTER_PATH = re.compile(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/clusters/[a-z]([-a-z0-9]*[a-z0-9])?$"
)
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names every problem and where it is."""


class _Strict(BaseModel):
    # strict: a wrong type is an error, never coerced (`concurrency: true` is not 1, `"30"` is not 30);
    # no inf/nan: `window_seconds: .inf` would wait forever
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Scope(_Strict):
    organization: str | None = None  # "NUMBER" or "organizations/NUMBER"
    folders: list[str] = Field(default_factory=list)  # "folders/N"
    projects: list[str] = Field(default_factory=list)  # project ids
    project_labels: dict[str, str] = Field(default_factory=dict)  # keep only projects with all these labels
    exclude_projects: list[str] = Field(default_factory=list)

    @field_validator("organization")
    @classmethod
    def _org(cls, v: str | None) -> str | None:
        if v is None:
            return v
        number = v.removeprefix("organizations/")
        if not number.isdigit():
            raise ValueError(f"must be an organization number like '123456789012', got {v!r}")
        return number

    @field_validator("folders")
    @classmethod
    def _folders(cls, v: list[str]) -> list[str]:
        for f in v:
            if not re.fullmatch(r"folders/\d+", f):
                raise ValueError(f"each folder must look like 'folders/123', got {f!r}")
        return v

    @field_validator("projects", "exclude_projects")
    @classmethod
    def _projects(cls, v: list[str]) -> list[str]:
        for p in v:
            if not PROJECT_ID.fullmatch(p):
                raise ValueError(f"{p!r} is not a valid project id (6-30 lowercase letters, digits, hyphens)")
        return v

    @model_validator(mode="after")
    def _something(self) -> Scope:
        if not (self.organization or self.folders or self.projects):
            raise ValueError("set at least one of organization, folders or projects")
        return self


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]") if ":" in endpoint else endpoint
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Api(_Strict):
    container_endpoint: str = GOOGLE_CONTAINER
    resourcemanager_endpoint: str = GOOGLE_RESOURCEMANAGER
    plaintext: bool = False  # only for loopback endpoints (the simulator)
    anonymous: bool = False  # AnonymousCredentials instead of Application Default Credentials
    kubernetes_token: str | None = Field(default=None, repr=False)  # static bearer token; default: ADC token

    @field_validator("container_endpoint", "resourcemanager_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if "://" in v or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", v):
            raise ValueError(f"must be HOST:PORT (no scheme), got {v!r}")
        return v

    @model_validator(mode="after")
    def _plaintext_loopback_only(self) -> Api:
        if self.plaintext:
            for key in ("container_endpoint", "resourcemanager_endpoint"):
                if not _is_loopback(getattr(self, key)):
                    raise ValueError(
                        f"plaintext is allowed only for loopback hosts, but {key} is {getattr(self, key)!r}"
                    )
        return self


class Limits(_Strict):
    concurrency: int = Field(default=16, ge=1, le=512)  # API calls in flight
    call_timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)  # per call, transient errors only
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    retry_budget: int = Field(default=1000, ge=0)  # retries per run, across all calls
    clusters_per_task: int = Field(default=50, ge=1)  # Prefect task granularity
    prefect_rate_limit: str | None = None  # Prefect rate limit on API calls, shared by every worker
    prefect_calls_per_second: float = Field(default=10.0, gt=0)  # its rate, set by `make deploy`


class Scan(_Strict):
    window_seconds: float = Field(default=60.0, gt=0)
    nodes_per_pool: int | None = Field(default=None, ge=1)  # None: every node, up to the cap
    max_nodes_per_pool: int = Field(default=10, ge=1)
    concurrency: int = Field(default=32, ge=1, le=512)  # node reads in flight
    clusters_in_parallel: int = Field(default=200, ge=1)
    request_timeout_seconds: float = Field(default=20.0, gt=0)
    max_metrics_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    probe_image: str = "us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest"
    probe_start_timeout_seconds: float = Field(default=300.0, gt=0)
    probe_log_interval_seconds: int = Field(default=20, ge=1)


class Override(_Strict):
    cluster: str
    reason: str = Field(min_length=10)

    @field_validator("cluster")
    @classmethod
    def _path(cls, v: str) -> str:
        if not CLUSTER_PATH.fullmatch(v):
            raise ValueError(f"must be projects/P/locations/L/clusters/C, got {v!r}")
        return v


class Gate(_Strict):
    allow_used_before: bool = False
    max_scan_age_seconds: float = Field(default=3600.0, gt=0)  # rescan right before a wave when older
    overrides: list[Override] = Field(default_factory=list)


class Selector(_Strict):
    projects: list[str] = Field(default_factory=list)
    folders: list[str] = Field(default_factory=list)
    project_labels: dict[str, str] = Field(default_factory=dict)
    cluster_labels: dict[str, str] = Field(default_factory=dict)
    locations: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)  # glob patterns on the cluster name
    mode: Literal["standard", "autopilot"] | None = None
    all: bool = False  # everything not taken by an earlier wave


class Wave(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    select: Selector
    max_clusters: int | None = Field(default=None, ge=1)  # take at most this many of the matches
    percent: float | None = Field(default=None, gt=0, le=100)  # or this share of all candidates
    concurrency: int = Field(default=5, ge=1)  # clusters changed at once
    soak_seconds: float = Field(default=0.0, ge=0)
    failure_budget: int = Field(default=0, ge=0)  # halt when more clusters than this fail


class Rollout(_Strict):
    waves: list[Wave] = Field(default_factory=list)  # empty: canary, 5%, 25%, rest (non-production first)
    set_nap_auto_config: bool = False  # the seed advises leaving NAP's auto-config alone
    operations_in_flight: int = Field(default=20, ge=1)
    operations_per_project: int = Field(default=5, ge=1)
    operations_per_region: int = Field(default=10, ge=1)
    prefect_mutation_limit: str | None = None  # Prefect global concurrency limit shared by every worker
    prefect_mutations_in_flight: int = Field(default=20, ge=1)  # its slots, set by `make deploy`
    operation_timeout_seconds: float = Field(default=3600.0, gt=0)
    operation_poll_seconds: float = Field(default=5.0, gt=0)
    operation_poll_max_seconds: float = Field(
        default=30.0, gt=0
    )  # the backoff between polls stops growing here
    operation_retries: int = Field(default=2, ge=0)
    verify_nodes: bool = True  # confirm on a node's running kubelet (/configz) that the port is closed
    default_soak_seconds: float = Field(default=300.0, ge=0)
    production_labels: dict[str, str] = Field(default_factory=lambda: {"env": "prod"})

    @model_validator(mode="after")
    def _unique(self) -> Rollout:
        names = [w.name for w in self.waves]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"wave names must be unique; repeated: {', '.join(dupes)}")
        return self


class Config(_Strict):
    scope: Scope
    api: Api = Field(default_factory=Api)
    limits: Limits = Field(default_factory=Limits)
    scan: Scan = Field(default_factory=Scan)
    gate: Gate = Field(default_factory=Gate)
    rollout: Rollout = Field(default_factory=Rollout)


def _where(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _explain(exc: ValidationError, source: str) -> ConfigError:
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  - {_where(loc)}: {msg}")
    return ConfigError("\n".join(lines))


def parse_config(data: object, source: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'scope' key")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_config(data, str(path))
