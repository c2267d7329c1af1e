#!/usr/bin/env bash
# Create a Cloud TPU VM or pod slice.
#
#   tpu_scripts/create.sh [--dry-run] [--spot | --preemptible] [--queued]
#
# --spot / --preemptible  cheaper capacity that may be reclaimed (restart from MODEL_DIR).
# --queued                ask through a queued resource (waits for capacity), then print its
#                         state; watch it with
#                         gcloud compute tpus queued-resources describe QUEUED_RESOURCE ...
# Needs TPU_NAME, ZONE, PROJECT; ACCELERATOR_TYPE and RUNTIME_VERSION have defaults.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

capacity=()
queued=0
for arg in "${REST_ARGS[@]+"${REST_ARGS[@]}"}"; do
  case "$arg" in
    --spot) capacity=(--spot) ;;
    --preemptible) capacity=(--preemptible) ;;
    --queued) queued=1 ;;
    *) die "create.sh: unknown argument $arg" ;;
  esac
done

require TPU_NAME ZONE PROJECT ACCELERATOR_TYPE
RUNTIME_VERSION="${RUNTIME_VERSION:-$(default_runtime_version "$ACCELERATOR_TYPE")}"
gcloud_flags

if [[ $queued == 1 ]]; then
  if [[ "${capacity[*]-}" == "--preemptible" ]]; then
    die "queued resources take --spot, not --preemptible"
  fi
  qr="${QUEUED_RESOURCE:-$TPU_NAME-qr}"
  run gcloud compute tpus queued-resources create "$qr" "${GCLOUD_FLAGS[@]}" \
    "--node-id=$TPU_NAME" "--accelerator-type=$ACCELERATOR_TYPE" \
    "--runtime-version=$RUNTIME_VERSION" "${capacity[@]+"${capacity[@]}"}"
  run gcloud compute tpus queued-resources describe "$qr" "${GCLOUD_FLAGS[@]}"
else
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_FLAGS[@]}" \
    "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" \
    "${capacity[@]+"${capacity[@]}"}"
fi
