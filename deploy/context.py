"""What every step works with: the config, how to run commands and send API requests, the
values found on the way (facts), and how to tell the person what happened."""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deploy.api import Api, ReadOnlyApi
from deploy.config import Config
from deploy.names import kube_context
from deploy.runner import ReadOnlyRunner, Runner
from deploy.types import Secret, StepFailed

# What a plan shows for values known only at run time.
PLACEHOLDERS = {
    "image_tag": "<git-commit>",
    "static_ip": "<static-ip>",
    "cluster_endpoint": "<cluster-endpoint>",
    "cluster_ca": "<cluster-ca-base64>",
    "filestore_ip": "<filestore-ip>",
    "redis_host": "<redis-host>",
    "redis_port": "<redis-port>",
    "redis_ca": "<redis-ca-pem>",
    "backend_service": "<backend-service-name>",
    "audience": "/projects/<project-number>/global/backendServices/<backend-service-id>",
    "function_url": "<function-url>",
}
REDIS_AUTH_PLACEHOLDER = "<redis-auth-string>"


@dataclass
class Facts:
    """Values found on the way (the static IP, the Filestore IP, ...), by name."""

    values: dict[str, str] = field(default_factory=dict)
    redis_auth: Secret | None = None
    redis_url_changed: bool = False  # the function must pick up a new secret version

    def __getitem__(self, name: str) -> str:
        try:
            return self.values[name]
        except KeyError:
            raise StepFailed(
                f"{name} is not known at this point (a bug in the step order)"
            ) from None

    def __setitem__(self, name: str, value: str) -> None:
        self.values[name] = value

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def redis_url(self) -> Secret:
        """`rediss://:AUTH@HOST:PORT/0?ssl_check_hostname=false`. Memorystore's certificate
        names its IP only as the subject's common name, which Python's TLS does not match
        an IP against; the certificate is still checked against the instance's own CA
        (docs/troubleshooting.md, Redis)."""
        if self.redis_auth is None:
            raise StepFailed("the Redis AUTH string is not known at this point")
        auth = quote(self.redis_auth.reveal(), safe="")
        where = f"{self['redis_host']}:{self['redis_port']}"
        return Secret(f"rediss://:{auth}@{where}/0?ssl_check_hostname=false")

    @classmethod
    def planned(cls, config: Config) -> Facts:
        """Placeholders for everything, so a plan can show any step on its own."""
        facts = cls(dict(PLACEHOLDERS), Secret(REDIS_AUTH_PLACEHOLDER))
        facts["kube_context"] = kube_context(config)
        if config.image_tag:
            facts["image_tag"] = config.image_tag
        if config.iap.audience:
            facts["audience"] = config.iap.audience
        return facts


@dataclass
class Context:
    config: Config
    runner: Runner
    api: Api
    facts: Facts
    root: Path  # the repository: the chart, the images' build files, the function's source
    work_dir: Path  # generated files: chart values, the staged function source
    out: Callable[[str], None]
    plan: bool = False
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def say(self, text: str) -> None:
        """What a step found or did. A plan does not say it: it did nothing."""
        if not self.plan:
            self.out(f"  {text}")

    def note(self, text: str) -> None:
        """An explanation in a plan (what a real run would do between two commands)."""
        if self.plan:
            self.out(f"  # {text}")

    def gcloud(self, *args: str) -> list[str]:
        return ["gcloud", *args, f"--project={self.config.project}"]

    def kubectl(self, *args: str) -> list[str]:
        return ["kubectl", f"--context={self.facts['kube_context']}", *args]

    def helm(self, *args: str) -> list[str]:
        return ["helm", *args, f"--kube-context={self.facts['kube_context']}"]

    def query_json(self, argv: Sequence[str], planned: Any = None) -> Any:
        """The command's JSON output, or None when the thing does not exist (a plan:
        `planned`, None meaning "does not exist")."""
        text = self.runner.query(argv, planned=None if planned is None else json.dumps(planned))
        if text is None:
            return None
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            raise StepFailed(f"`{shlex.join(argv)}` did not print JSON") from None

    def read_json(self, argv: Sequence[str], planned: Any) -> Any:
        """Like `query_json`, for something that must exist."""
        found = self.query_json(argv, planned)
        if found is None:
            raise StepFailed(f"`{shlex.join(argv)}` found nothing")
        return found

    def write(self, path: Path, text: str) -> None:
        """Write a generated file; a plan shows its content instead."""
        if self.plan:
            self.note(f"writes {self.shown(path)}:")
            for line in text.splitlines():
                self.out(f"      {line}")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def shown(self, path: Path) -> str:
        """A path as commands get it: relative to the repository when inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def read_only(self) -> Context:
        return dataclasses.replace(
            self, runner=ReadOnlyRunner(self.runner), api=ReadOnlyApi(self.api)
        )
