#!/usr/bin/env bash
# Starts AUTOMATIC1111's WebUI the way a sd-allocator GameServer pod needs it (README.md beside
# this file): listening on 7860 for the allocator, with its API, with every outputs folder
# under /workspace/outputs, models read from the share, no installs, and no
# outputs-folder settings a person could change.
# Pictures go to the pod-local /workspace/outputs; the sidecar delivers each finished file to
# the person's folder on the share, which this container never mounts.
#
# Environment:
#   WEBUI_EXTRA_ARGS  more A1111 flags, split on whitespace on purpose (no quoting, no globbing:
#                     a value cannot contain spaces), e.g. "--no-hashing --medvram".
#   WEBUI_CHECK_ARGS  1: only check that A1111 accepts the flags below, then exit (the image
#                     build runs this).
# Arguments given to this script go to launch.py after the flags below.
set -euo pipefail

WEBUI_DIR=/opt/sd-webui
POD_DIR=/opt/sd-webui-pod
# Must equal the sidecar's OUTPUTS_DIR (its default); outputs-settings.json names it too.
OUTPUTS_DIR=/workspace/outputs
DATA_DIR=/workspace/data
MODELS=/share/models

log() {
  printf 'sd-webui: %s\n' "$*" >&2
}

flags=(
  --skip-prepare-environment # everything was installed when the image was built
  --skip-install
  --listen
  --port 7860
  --api
  --hide-ui-dir-config # nobody may move the outputs folders (or use batch-from-folder)
  --no-download-sd-model
  --data-dir "$DATA_DIR"
  # The WebUI's own models folder stays in the image (it holds A1111's small live-preview
  # model, and upscalers downloaded on first use land there); the share provides the rest.
  --models-dir "$WEBUI_DIR/models"
  --ckpt-dir "$MODELS/Stable-diffusion"
  --vae-dir "$MODELS/VAE"
  --lora-dir "$MODELS/Lora"
  --embeddings-dir "$MODELS/embeddings"
  --hypernetwork-dir "$MODELS/hypernetworks"
)
extra=()
# -d '': every line of the value (read stops at the first NUL, which a here-string lacks).
read -r -d '' -a extra <<<"${WEBUI_EXTRA_ARGS:-}" || true
flags+=("${extra[@]}" "$@")

# The flags against A1111's parser, built as A1111 builds it (modules/shared_cmd_options.py):
# cmd_args.py plus the flags built-in extensions add (--lora-dir comes from the Lora one).
check_flags() {
  cd "$WEBUI_DIR"
  python - "${flags[@]}" <<'PY'
import sys

from modules import cmd_args, script_loading
from modules.paths_internal import extensions_builtin_dir

script_loading.preload_extensions(extensions_builtin_dir, cmd_args.parser)
_, unknown = cmd_args.parser.parse_known_args(sys.argv[1:])
if unknown:
    sys.exit(f"sd-webui: A1111 does not know these flags: {' '.join(unknown)}")
print("sd-webui: A1111 accepts every start flag", file=sys.stderr)
PY
}

# A plain pod-local folder; a link in its place (nothing of ours makes one) is refused: the
# sidecar reads this folder and must see the WebUI's own files.
make_outputs() {
  if [ -L "$OUTPUTS_DIR" ]; then
    log "$OUTPUTS_DIR is a symlink, not the pod-local outputs folder; not starting"
    exit 2
  fi
  mkdir -p "$OUTPUTS_DIR"
}

# The outputs folders, in the settings file A1111 reads at start (with --hide-ui-dir-config the
# only place to set them): our keys over whatever the file holds (A1111 rewrites it whenever a
# setting is saved; a restarted container keeps the rest).
write_settings() {
  mkdir -p "$DATA_DIR"
  python - "$DATA_DIR/config.json" "$POD_DIR/outputs-settings.json" <<'PY'
import json
import os
import sys

target, ours = sys.argv[1], sys.argv[2]
settings = {}
if os.path.exists(target):
    with open(target, encoding="utf8") as handle:
        settings = json.load(handle)
with open(ours, encoding="utf8") as handle:
    settings.update(json.load(handle))
draft = f"{target}.{os.getpid()}"
with open(draft, "w", encoding="utf8") as handle:
    json.dump(settings, handle, indent=4)
os.replace(draft, target)
PY
}

# Missing folders on the share are not fatal, but say so: the mount is read-only, so A1111
# cannot create them, and without a checkpoint it starts with no model at all.
check_models() {
  local sub
  for sub in Stable-diffusion VAE Lora embeddings hypernetworks; do
    if [ ! -d "$MODELS/$sub" ]; then
      log "warning: $MODELS/$sub does not exist; create it on the share (models/$sub)"
    fi
  done
  if [ -d "$MODELS/Stable-diffusion" ] \
    && [ -z "$(find "$MODELS/Stable-diffusion" \( -name '*.safetensors' -o -name '*.ckpt' \) -print -quit)" ]; then
    log "warning: no *.safetensors or *.ckpt under $MODELS/Stable-diffusion; the WebUI starts without a model"
  fi
}

if [ "${WEBUI_CHECK_ARGS:-}" = 1 ]; then
  check_flags
  exit 0
fi
make_outputs
write_settings
check_models
cd "$WEBUI_DIR"
log "starting: python launch.py ${flags[*]}"
exec python launch.py "${flags[@]}"
