"""The deploy config file: one YAML mapping, checked completely before anything runs.

Every problem is reported on its own line, naming the key (`cluster.gpu.type: ...`). Unknown
keys are refused (a typo must not silently fall back to a default). deploy.example.yaml
documents every key.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from deploy import yamlfile

# Filestore Basic minimum capacities, in GiB (Filestore's "GB" is 1024^3 bytes).
MIN_CAPACITY_GB = {"BASIC_HDD": 1024, "BASIC_SSD": 2560}

# The nvidia.com/gpu each WebUI's sd-webui container requests: the chart's webui.gpuCount
# (helm/sd-allocator/values.yaml), which the deploy leaves at its default.
GPUS_PER_WEBUI = 1


class ConfigError(Exception):
    """The config file is missing, not YAML, or holds wrong values: one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _matching(pattern: str, rule: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def _checked(check: Callable[[str], str]) -> AfterValidator:
    return AfterValidator(check)


def _cidr28(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError("expected an IPv4 range like 10.8.0.0/28") from None
    if network.version != 4 or network.prefixlen != 28 or not network.is_private:
        raise ValueError("a VPC connector needs an unused private IPv4 /28 range, like 10.8.0.0/28")
    return value


def _schedule(value: str) -> str:
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,?-]+", f) for f in fields):
        raise ValueError("a cron schedule has 5 fields: minute hour day month weekday")
    return value


def _buffer(value: int) -> int:
    if value < 1:
        raise ValueError("at least 1: Agones's Buffer autoscaler keeps 1 or more WebUIs ready")
    return value


def _hostname(value: str) -> str:
    label = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
    if len(value) > 253 or not re.fullmatch(rf"{label}(\.{label})+", value):
        raise ValueError("expected a host name like sd.example.com (no scheme, no path)")
    return value


ProjectId = Annotated[
    str,
    _matching(
        r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
        "a project ID is 6-30 lowercase letters, digits or hyphens, starting with a letter",
    ),
]
Region = Annotated[str, _matching(r"[a-z]+-[a-z]+[0-9]+", "expected a region like us-central1")]
Zone = Annotated[str, _matching(r"[a-z]+-[a-z]+[0-9]+-[a-z]", "expected a zone like us-central1-a")]
Location = Annotated[
    str,
    _matching(r"[a-z]+(-[a-z]+[0-9]+)?", "expected a region like us-central1 or a multi-region"),
]
Name = Annotated[
    str,
    _matching(
        r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
        "1-63 lowercase letters, digits or hyphens, starting with a letter, not ending with -",
    ),
]
ShortName = Annotated[
    str,
    _matching(
        r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?",
        "1-40 lowercase letters, digits or hyphens, starting with a letter, not ending with -",
    ),
]
ConnectorName = Annotated[
    str,
    _matching(
        r"[a-z][-a-z0-9]{0,23}[a-z0-9]",
        "2-25 lowercase letters, digits or hyphens, starting with a letter",
    ),
]
ShareName = Annotated[
    str,
    _matching(
        r"[a-z][a-z0-9_]{0,15}",
        "1-16 lowercase letters, digits or underscores, starting with a letter",
    ),
]
MachineType = Annotated[
    str, _matching(r"[a-z][a-z0-9]*-[a-z0-9-]+", "expected a machine type like g2-standard-8")
]
Version = Annotated[str, _matching(r"[0-9]+\.[0-9]+\.[0-9]+", "expected a version like 1.60.0")]
RedisVersion = Annotated[
    str, _matching(r"redis_[0-9]+_([0-9]+|x)", "expected a version like redis_7_2")
]
ImageTag = Annotated[
    str,
    _matching(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a Docker tag: letters, digits, _ . -"),
]
Email = Annotated[
    str, _matching(r"[^@\s]+@[^@\s]+\.[^@\s.]+", "expected an email address like ada@example.com")
]
Audience = Annotated[
    str,
    _matching(
        r"/projects/[0-9]+/global/backendServices/[0-9]+",
        "expected /projects/NUMBER/global/backendServices/ID",
    ),
]
Cidr28 = Annotated[str, _checked(_cidr28)]
Schedule = Annotated[str, _checked(_schedule)]
Hostname = Annotated[str, _checked(_hostname)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        """A section whose keys are all commented out reads as null: its defaults."""
        return {} if data is None else data


class Gpu(Section):
    type: Literal["nvidia-l4", "nvidia-tesla-t4"] = "nvidia-l4"
    machine_type: MachineType = "g2-standard-8"
    count: Annotated[int, Field(ge=1, le=8)] = 1
    min_nodes: Annotated[int, Field(ge=0, le=1000)] = 0
    max_nodes: Annotated[int, Field(ge=1, le=1000)] = 4
    driver_version: Literal["default", "latest"] = "default"
    spot: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Gpu:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) exceeds max_nodes ({self.max_nodes})")
        if self.type == "nvidia-l4" and not self.machine_type.startswith("g2-"):
            raise ValueError("nvidia-l4 GPUs need a g2-standard-* machine_type")
        if self.type == "nvidia-tesla-t4" and not self.machine_type.startswith("n1-"):
            raise ValueError("nvidia-tesla-t4 GPUs need an n1-* machine_type")
        return self

    @property
    def most_webuis(self) -> int:
        """How many WebUIs the pool holds at its largest."""
        return self.max_nodes * self.count // GPUS_PER_WEBUI


class Cluster(Section):
    name: ShortName = "sd-allocator"
    create: bool = True
    machine_type: MachineType = "e2-standard-4"
    nodes: Annotated[int, Field(ge=1, le=100)] = 2
    gpu: Gpu = Gpu()


class Registry(Section):
    location: Location | None = None  # None: the region
    repository: Name = "sd-allocator"


class Filestore(Section):
    instance: Name = "sd-share"
    tier: Literal["BASIC_HDD", "BASIC_SSD"] = "BASIC_HDD"
    share: ShareName = "share"
    capacity_gb: Annotated[int, Field(ge=1)] = 1024

    @model_validator(mode="after")
    def _big_enough(self) -> Filestore:
        minimum = MIN_CAPACITY_GB[self.tier]
        if self.capacity_gb < minimum:
            raise ValueError(f"capacity_gb must be at least {minimum} for tier {self.tier}")
        return self


class Redis(Section):
    instance: ShortName = "sd-allocator"
    tier: Literal["basic", "standard_ha"] = "basic"
    size_gb: Annotated[int, Field(ge=1, le=300)] = 1
    version: RedisVersion = "redis_7_2"


class Agones(Section):
    version: Version = "1.60.0"


class Fleet(Section):
    """The FleetAutoscaler's Buffer policy, with the bounds Agones itself enforces."""

    buffer: Annotated[int, Field(le=100), AfterValidator(_buffer)] = 1
    min: Annotated[int, Field(ge=0, le=1000)] = 1
    max: Annotated[int, Field(ge=1, le=1000)] = 4

    @model_validator(mode="after")
    def _ordered(self) -> Fleet:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
        if self.buffer > self.max:
            raise ValueError(f"buffer ({self.buffer}) exceeds max ({self.max})")
        if 0 < self.min < self.buffer:
            raise ValueError(
                f"min ({self.min}) must be 0 or at least buffer ({self.buffer}): "
                "Agones refuses a minReplicas in between"
            )
        return self


class Cruiser(Section):
    mode: Literal["function", "cronjob"] = "function"
    schedule: Schedule = "* * * * *"
    idle_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    function_name: Name = "sd-cruiser"
    connector: ConnectorName = "sd-allocator-conn"
    connector_range: Cidr28 = "10.8.0.0/28"


class Iap(Section):
    audience: Audience | None = None  # None: discovered after the chart's Ingress exists
    # A Secret in the chart's namespace with keys client_id and client_secret: your own OAuth
    # client. None: Google's managed client, which admits only people of your organization.
    oauth_secret: Name | None = None
    external_users: bool = False  # people outside the organization sign in

    @model_validator(mode="after")
    def _client_for_outsiders(self) -> Iap:
        if self.external_users and self.oauth_secret is None:
            raise ValueError(
                "external_users needs oauth_secret: Google's managed OAuth client admits only "
                "people of your organization"
            )
        return self


class Config(Section):
    project: ProjectId
    region: Region = "us-central1"
    zone: Zone = "us-central1-a"
    network: Name = "default"
    domain: Hostname
    static_ip_name: Name = "sd-allocator-ip"
    image_tag: ImageTag | None = None  # None: the git short commit of HEAD
    admins: tuple[Email, ...] = ()
    cluster: Cluster = Cluster()
    registry: Registry = Registry()
    filestore: Filestore = Filestore()
    redis: Redis = Redis()
    agones: Agones = Agones()
    fleet: Fleet = Fleet()
    cruiser: Cruiser = Cruiser()
    iap: Iap = Iap()

    @model_validator(mode="after")
    def _zone_in_region(self) -> Config:
        if not self.zone.startswith(self.region + "-"):
            raise ValueError(f"zone {self.zone} is not in region {self.region}")
        return self

    @model_validator(mode="after")
    def _fleet_fits_the_gpu_pool(self) -> Config:
        gpu, most = self.cluster.gpu, self.cluster.gpu.most_webuis
        if self.fleet.max > most:
            raise ValueError(
                f"fleet.max ({self.fleet.max}) is more WebUIs than the GPU pool can run: "
                f"cluster.gpu.max_nodes {gpu.max_nodes} with count {gpu.count} GPU(s) each, "
                f"at {GPUS_PER_WEBUI} per WebUI, holds {most}; the rest would stay Pending. "
                f"Lower fleet.max to {most} or raise cluster.gpu.max_nodes"
            )
        return self

    @property
    def function_mode(self) -> bool:
        return self.cruiser.mode == "function"


def load_config(path: Path) -> Config:
    """Read and check the config file; `ConfigError` lists every problem."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (start from deploy.example.yaml)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror}"]) from None
    data = _parse_yaml(path, text)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of settings (see deploy.example.yaml)"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {_describe(error)}" for error in exc.errors()]) from None


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        return yamlfile.load(text)
    except yamlfile.YamlError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def _describe(error: ErrorDetails) -> str:
    loc = _location(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key{_suggestion(error['loc'])}"
    if error["type"] == "missing":
        return f"{loc}: required"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    shown = isinstance(given, str | int | float) and len(str(given)) <= 80
    got = f" (got {given!r})" if shown else ""
    return f"{loc or 'config'}: {message}{got}"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _suggestion(loc: tuple[int | str, ...]) -> str:
    """`(did you mean gpu?)` for a misspelt key."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
