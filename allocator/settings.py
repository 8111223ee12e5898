"""Every setting of the allocator, from `SDA_*` environment variables or `serve` flags.

A bad value stops start-up with one line that names the variable (`SettingsError`).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SDA_"
MEMORY_STORE = "memory"
PEM_BEGIN = "-----BEGIN"
SECRET_FIELDS = frozenset({"redis_url", "secret_key"})  # never echoed in errors or logs
LOCAL_PLACEHOLDERS = frozenset({"port", "user_dir", "outputs_dir", "python", "gpu"})
# What NVIDIA ids use: an index (0), a UUID (GPU-8f3c...), a MIG device (MIG-...).
_GPU_ID = re.compile(r"[A-Za-z0-9:-]+")
EXTRA_VARIABLES = frozenset({"SDA_REQUIRE_ALL"})  # read by the test suite, not the server
DEFAULT_LOCAL_COMMAND = (
    "{python} -m demo_webui --port {port} --user-dir {user_dir} --outputs-dir {outputs_dir}"
)
# Paths a page polls while nobody does anything: Gradio heartbeats, progress polling.
DEFAULT_IDLE_EXEMPT = (
    "/gradio_api/heartbeat/*,/heartbeat/*,/internal/progress,/internal/pending-tasks,"
    "/sdapi/v1/progress,/gradio_api/queue/status,/queue/status,/internal/ping"
)


def default_data_dir() -> Path:
    # Not under ~/.local: AUTOMATIC1111's Gradio 3 refuses to serve any file whose path has a
    # folder starting with "." (its /file= route answers 403), so pictures would not display.
    return Path.home() / "sd-allocator"


def former_default_data_dir() -> Path:
    """Where people's folders were by default until 2026-12 (told at start, never moved)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sd-allocator"


DEFAULT_ACTIVITY_INTERVAL = 5.0
DEFAULT_BUSY_AFTER = 3.0
RETURN_AFTER = 60.0  # seconds without an activity write: a person's next request is written at once
MIN_QUEUE_ABANDON = 15
CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    backend: Literal["local", "static", "agones"] = "local"
    static_target: str | None = None
    identity: Literal["dev", "header", "iap"] = "dev"
    identity_header: str = "X-Goog-Authenticated-User-Email"
    iap_audience: str | None = None
    iap_jwks_url: str = "https://www.gstatic.com/iap/verify/public_key-jwk"
    iap_key_refetch: float = Field(30.0, ge=0)  # an unknown kid refetches at most this often
    redis_url: str = MEMORY_STORE
    redis_ca_cert: str | None = None  # rediss:// CA: PEM text or a file's path (Memorystore's)
    idle_timeout: float = Field(900, gt=0)
    max_sessions: int = Field(4, ge=1, description="4; with SDA_LOCAL_GPUS, their number")
    local_gpus: CommaList = ()  # one per WebUI (CUDA_VISIBLE_DEVICES)
    local_command: str = DEFAULT_LOCAL_COMMAND
    admins: CommaList = ()
    metrics_host: str | None = None
    metrics_port: int = Field(9090, ge=0, le=65535)
    namespace: str = "default"
    fleet: str = "sd-webui"
    agones_port_name: str = "sd"
    outputs_wait: float = Field(15.0, ge=0)  # for the sidecar's folder confirmation; 0: off
    kube_timeout: float = Field(10.0, gt=0)  # seconds per Kubernetes API call
    kube_api_url: str | None = None  # outside the cluster: its endpoint, with Google credentials
    kube_ca_cert: str | None = None  # ... and its CA (base64 of the PEM, as GKE reports it)

    data_dir: Path = Field(default_factory=default_data_dir)
    # Everyone's folders (outputs): SDA_USERS_DIR; unset, <data_dir>/users. Behind Agones
    # the share's users/ folder, mounted read-only.
    users_dir: Path = Field(default_factory=lambda: default_data_dir() / "users")
    # Where "delete" in My pictures asks the pods' sidecars to delete (behind Agones, where
    # users/ is read-only here): SDA_DELETIONS_DIR; unset, pictures are deleted directly.
    deletions_dir: Path | None = None
    secret_key: SecretStr | None = None
    force_dev_identity: bool = False
    idle_exempt_paths: CommaList = tuple(DEFAULT_IDLE_EXEMPT.split(","))
    allowed_hosts: CommaList = ()  # empty: loopback names with dev identity, else any
    forwarded_allow_ips: str = "127.0.0.1"

    cache_ttl: float = Field(2.0, ge=0)
    store_outage_grace: float = Field(60.0, ge=0)
    # Unset: scaled with the idle timeout (`activity_period`, `busy_delay`).
    activity_interval: float | None = Field(
        None, gt=0, description="5 s, at most a quarter of SDA_IDLE_TIMEOUT"
    )
    busy_after: float | None = Field(
        None, ge=0, description="3 s, at most a quarter of SDA_IDLE_TIMEOUT"
    )
    busy_lease_ttl: float = Field(30.0, gt=0)
    allocation_wait: float = Field(3.0, ge=0)
    allocation_lock_ttl: float = Field(30.0, gt=0)
    start_timeout: float = Field(120.0, gt=0)
    cruiser: Literal["auto", "on", "off"] = "auto"  # in-process passes; auto: local backend
    cruise_interval: float = Field(60.0, gt=0)
    cruise_concurrency: int = Field(16, ge=1, le=256)
    max_session_age: float = Field(0, ge=0)  # seconds; 0: no limit
    orphan_grace: float = Field(600.0, gt=0)
    no_capacity_retry: float = Field(10.0, gt=0)  # the queue's head, when capacity is unknown
    queue_abandon: float = Field(60.0, gt=0)  # a queued person silent this long leaves the queue
    pressure_idle_timeout: float = Field(300.0, ge=0)  # while anyone is queued; 0: off
    badge: Literal["on", "off"] = "on"  # the give-back countdown inside the WebUI page
    failure_retry: float = Field(30.0, gt=0)
    daily_gpu_hours: float = Field(0, ge=0, le=24)  # allocated hours per person per UTC day; 0: off
    quota_exempt: CommaList = ()  # besides the admins
    # How long per-person daily usage is kept; at least 2: one accrual writes up to 3 days.
    usage_days: int = Field(90, ge=2, le=3660)

    upstream_connect_timeout: float = Field(5.0, gt=0)
    upstream_read_timeout: float = Field(0, ge=0)  # 0: none (generations and streams are long)
    keepalive_timeout: float = Field(620, gt=0)  # above the Google load balancer's 600 s
    shutdown_timeout: float = Field(25, ge=0)
    ws_max_size: int = Field(1 << 30, gt=0)
    max_header_bytes: int = Field(64 * 1024, ge=1024)

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False

    @field_validator("admins", "quota_exempt", "idle_exempt_paths", "allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("local_gpus", mode="before")
    @classmethod
    def _split_gpus(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",")) if value.strip() else ()
        return value

    @field_validator("local_gpus")
    @classmethod
    def _check_gpus(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for gpu in value:
            if not gpu:
                raise ValueError("an empty GPU id (two commas in a row, or one at the end?)")
            if not _GPU_ID.fullmatch(gpu):
                raise ValueError(
                    f"GPU id {gpu!r}: use only letters, digits, '-' and ':' "
                    "(an index like 0, or a UUID like GPU-8f3c… as nvidia-smi -L shows)"
                )
        duplicates = sorted({gpu for gpu in value if value.count(gpu) > 1})
        if duplicates:
            raise ValueError(f"GPU {duplicates[0]} is listed twice; each WebUI gets its own GPU")
        return value

    @field_validator("admins", "quota_exempt")
    @classmethod
    def _lower_admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(admin.lower() for admin in value)

    @field_validator("static_target")
    @classmethod
    def _check_target(cls, value: str | None) -> str | None:
        if value is not None:
            parse_authority(value)
        return value

    @field_validator("local_command")
    @classmethod
    def _check_command(cls, value: str) -> str:
        unknown = placeholders(value) - LOCAL_PLACEHOLDERS
        if unknown:
            known = ", ".join(sorted("{" + n + "}" for n in LOCAL_PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; known: {known}")
        if "{port}" not in value:
            raise ValueError("must contain {port}")
        return value

    @field_validator("redis_ca_cert")
    @classmethod
    def _check_ca(cls, value: str | None) -> str | None:
        if value and not value.startswith(PEM_BEGIN) and not Path(value).is_file():
            raise ValueError("must be PEM text or the path of a PEM file that exists")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if value != MEMORY_STORE and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must be 'memory' or a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="before")
    @classmethod
    def _users_under_data_dir(cls, values: Any) -> Any:
        """Unset, SDA_USERS_DIR follows SDA_DATA_DIR."""
        if isinstance(values, dict) and not values.get("users_dir") and values.get("data_dir"):
            return {**values, "users_dir": Path(values["data_dir"]) / "users"}
        return values

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.backend == "static" and not self.static_target:
            raise ValueError("SDA_STATIC_TARGET is required when SDA_BACKEND=static")
        if self.identity == "iap" and not self.iap_audience:
            raise ValueError("SDA_IAP_AUDIENCE is required when SDA_IDENTITY=iap")
        if "gpu" in placeholders(self.local_command) and not self.local_gpus:
            raise ValueError(
                "SDA_LOCAL_COMMAND uses {gpu} but SDA_LOCAL_GPUS is empty: list the GPUs "
                "(e.g. SDA_LOCAL_GPUS=0,1) or remove {gpu} from the command"
            )
        if self.redis_ca_cert and not self.redis_url.startswith("rediss://"):
            raise ValueError("SDA_REDIS_CA_CERT is for TLS: SDA_REDIS_URL must be rediss://")
        if self.redis_url == MEMORY_STORE and self.workers > 1:
            raise ValueError(
                "SDA_REDIS_URL=memory lives inside one process; with SDA_WORKERS > 1 "
                "set SDA_REDIS_URL to a redis:// URL"
            )
        lag = self.activity_period + self.busy_delay
        if lag > self.shortest_reclaim / 2:
            timeout = (
                "SDA_IDLE_TIMEOUT"
                if self.shortest_reclaim == self.idle_timeout
                else ("SDA_PRESSURE_IDLE_TIMEOUT")
            )
            raise ValueError(
                f"SDA_ACTIVITY_INTERVAL + SDA_BUSY_AFTER ({lag:g} s) must be at most half of "
                f"{timeout} ({self.shortest_reclaim:g} s): activity and busy leases would "
                "reach the store too late to keep a session in use from being reclaimed "
                "(leave both unset to scale them with the timeout)"
            )
        if self.queue_abandon < MIN_QUEUE_ABANDON:
            raise ValueError(
                f"SDA_QUEUE_ABANDON must be at least {MIN_QUEUE_ABANDON} s: the queue page asks "
                "every 3 s and API callers are told to come back after 10 s"
            )
        if self.busy_lease_ttl <= 2 * self.activity_period:
            raise ValueError(
                "SDA_BUSY_LEASE_TTL must be more than twice SDA_ACTIVITY_INTERVAL: a busy "
                "lease is renewed at every activity write"
            )
        if self.orphan_grace <= self.allocation_lock_ttl + self.start_timeout:
            raise ValueError(
                "SDA_ORPHAN_GRACE must be longer than any allocation can take "
                "(SDA_ALLOCATION_LOCK_TTL + SDA_START_TIMEOUT)"
            )
        if self.identity == "dev" and not is_loopback(self.host) and not self.force_dev_identity:
            raise ValueError(
                f"SDA_IDENTITY=dev lets anyone sign in as anyone; it refuses to listen on "
                f"{self.host}. Use SDA_HOST=127.0.0.1, another identity, or "
                "SDA_FORCE_DEV_IDENTITY=true"
            )
        return self

    @property
    def accepted_hosts(self) -> tuple[str, ...]:
        """Host names requests may carry. With the dev identity only this machine's names by
        default: another site's page resolving its name to 127.0.0.1 (DNS rebinding) must
        not be able to sign in as anyone."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.identity == "dev":
            return tuple(dict.fromkeys(("localhost", "127.0.0.1", "[::1]", self.host)))
        return ("*",)

    @property
    def local_capacity(self) -> int:
        """WebUIs the local backend runs at once. With SDA_LOCAL_GPUS each takes a GPU of its
        own: their number, or SDA_MAX_SESSIONS if it is set lower (a higher one is capped)."""
        if not self.local_gpus:
            return self.max_sessions
        if "max_sessions" in self.model_fields_set:
            return min(self.max_sessions, len(self.local_gpus))
        return len(self.local_gpus)

    def reclaim_after(self, queued: bool) -> float:
        return reclaim_after(self.idle_timeout, self.pressure_idle_timeout, queued)

    @property
    def shortest_reclaim(self) -> float:
        """The least idleness after which a session may be reclaimed (under pressure, if on)."""
        return self.reclaim_after(queued=True)

    @property
    def return_after(self) -> float:
        """A person's first request after this long without an activity write is written
        before it goes on (activity.py): half the shortest reclaim timeout, at most 60 s."""
        return min(RETURN_AFTER, self.shortest_reclaim / 2)

    @property
    def quota_quiet(self) -> float:
        """Past the daily quota, a WebUI goes once quiet this long with no busy lease. Longer
        than the stored activity may lag a request (the return threshold plus two writes)
        and than a generation takes to hold its lease, so a request just made always
        counts: a generation is never cut."""
        return max(60.0, self.return_after + 2 * self.activity_period + self.busy_delay + 10)

    @property
    def activity_period(self) -> float:
        """Seconds between activity writes: SDA_ACTIVITY_INTERVAL, by default 5 s but at most
        a quarter of the (pressure) idle timeout (so activity always lands well before a
        reclaim)."""
        if self.activity_interval is not None:
            return self.activity_interval
        return min(DEFAULT_ACTIVITY_INTERVAL, self.shortest_reclaim / 4)

    @property
    def busy_delay(self) -> float:
        """Work lasting longer than this holds a busy lease: SDA_BUSY_AFTER, by default 3 s
        but at most a quarter of the (pressure) idle timeout."""
        if self.busy_after is not None:
            return self.busy_after
        return min(DEFAULT_BUSY_AFTER, self.shortest_reclaim / 4)

    @property
    def cruise_in_process(self) -> bool:
        """`serve` runs cruiser passes itself: on request, or for the local backend (so
        `make run` needs no second process); in production the Cloud Function does it."""
        return self.cruiser == "on" or (self.cruiser == "auto" and self.backend == "local")

    @property
    def metrics_bind(self) -> str:
        return self.metrics_host or self.host


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable."""


def reclaim_after(idle_timeout: float, pressure_idle_timeout: float, queued: int | bool) -> float:
    """Seconds of idleness before a session may be reclaimed: the idle timeout, or the
    shorter pressure timeout while someone waits for a GPU."""
    if queued and 0 < pressure_idle_timeout < idle_timeout:
        return pressure_idle_timeout
    return idle_timeout


def parse_authority(value: str) -> tuple[str, int]:
    """`host:port` → (host, port), with a message a person can act on."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def placeholders(command: str) -> set[str]:
    """The `{name}`s a command uses."""
    return {name for _, name, _, _ in string.Formatter().parse(command) if name is not None}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """`SDA_*` variables that name no setting (usually a typo), with a suggestion."""
    known = {env_name(name) for name in Settings.model_fields}
    found = []
    for name in sorted(environ if environ is not None else os.environ):
        if name.startswith(ENV_PREFIX) and name not in known and name not in EXTRA_VARIABLES:
            close = difflib.get_close_matches(name, known, n=1)
            found.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return found


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one clear `SettingsError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return message
    given = error.get("input")
    shown = isinstance(given, str | int | float) and loc[0] not in SECRET_FIELDS
    got = f" (got {given!r})" if shown and repr(given) not in message else ""
    return f"{env_name(loc[0])}: {message}{got}"
