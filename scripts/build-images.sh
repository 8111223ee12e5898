#!/usr/bin/env bash
# Builds and pushes the images under images/ (allocator, which also runs the cruiser; sd-webui;
# sidecar), each as $REGISTRY/<name>:$TAG, from the repository root.
#
#   REGISTRY=us-central1-docker.pkg.dev/PROJECT/REPOSITORY [TAG=...] [BUILDER=docker|cloudbuild] \
#     [PROJECT=...] scripts/build-images.sh [NAME...]
#
#   REGISTRY  required; where the images go (push access: `gcloud auth configure-docker HOST`)
#   TAG       default: the current git commit (12 hex digits), with -dirty if the tree has changes
#   BUILDER   docker: build and push here (needs a running Docker engine);
#             cloudbuild: `gcloud builds submit --config images/cloudbuild.yaml`, which builds
#             every image on Google's machines (so it takes no NAMEs);
#             default: docker if `docker info` works, else cloudbuild
#   PROJECT   cloudbuild only: the Google Cloud project (default: gcloud's configured one)
#   NAME...   docker only: some of the images (default: all)
set -euo pipefail

cd "$(dirname "$0")/.."

die() {
  printf 'build-images: %s\n' "$*" >&2
  exit 1
}

shopt -s nullglob
all=()
for dockerfile in images/*/Dockerfile; do
  name=${dockerfile#images/}
  all+=("${name%/Dockerfile}")
done
[ "${#all[@]}" -gt 0 ] || die "no images/*/Dockerfile found"

[ -n "${REGISTRY:-}" ] ||
  die "REGISTRY is not set; e.g. REGISTRY=us-central1-docker.pkg.dev/PROJECT/REPOSITORY $0"
registry=${REGISTRY%/}

tag=${TAG:-}
if [ -z "$tag" ]; then
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null) ||
    die "TAG is not set and this is not a git checkout to take the commit from"
  tag=$commit
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    tag=$commit-dirty
  fi
fi
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
  die "TAG '$tag' is not a valid image tag (letters, digits, _ . -; at most 128)"

names=("$@")
[ "${#names[@]}" -gt 0 ] || names=("${all[@]}")
for name in "${names[@]}"; do
  [[ " ${all[*]} " == *" $name "* ]] || die "no image '$name'; the images are: ${all[*]}"
done

docker_works() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

builder=${BUILDER:-}
if [ -z "$builder" ]; then
  if docker_works; then
    builder=docker
  elif command -v gcloud >/dev/null 2>&1; then
    builder=cloudbuild
  else
    die "no way to build: 'docker info' does not work here and gcloud is not installed"
  fi
fi

case $builder in
  docker)
    docker_works || die "BUILDER=docker, but 'docker info' fails: is a Docker engine running?"
    export DOCKER_BUILDKIT=1 # so each build reads images/<name>/Dockerfile.dockerignore
    for name in "${names[@]}"; do
      printf 'build-images: building %s\n' "$registry/$name:$tag" >&2
      docker build -f "images/$name/Dockerfile" -t "$registry/$name:$tag" .
    done
    for name in "${names[@]}"; do
      docker push "$registry/$name:$tag"
    done
    ;;
  cloudbuild)
    command -v gcloud >/dev/null 2>&1 || die "BUILDER=cloudbuild, but gcloud is not installed"
    for name in "${all[@]}"; do
      [[ " ${names[*]} " == *" $name "* ]] ||
        die "Cloud Build builds every image (images/cloudbuild.yaml); to build only ${names[*]}, use BUILDER=docker"
    done
    project=()
    if [ -n "${PROJECT:-}" ]; then
      project=(--project "$PROJECT")
    fi
    gcloud builds submit "${project[@]}" --config images/cloudbuild.yaml \
      "--substitutions=_REGISTRY=$registry,_TAG=$tag" .
    ;;
  *)
    die "BUILDER must be docker or cloudbuild, not '$builder'"
    ;;
esac

for name in "${names[@]}"; do
  printf 'build-images: pushed %s\n' "$registry/$name:$tag" >&2
done
