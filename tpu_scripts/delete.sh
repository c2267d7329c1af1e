#!/usr/bin/env bash
# Delete the TPU VM / pod slice (and its queued resource with --queued). Fetch results first:
# anything not in MODEL_DIR (gs://) is lost.
#
#   tpu_scripts/delete.sh [--dry-run] [--queued]

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

queued=0
for arg in "${REST_ARGS[@]+"${REST_ARGS[@]}"}"; do
  case "$arg" in
    --queued) queued=1 ;;
    *) die "delete.sh: unknown argument $arg" ;;
  esac
done

require TPU_NAME ZONE PROJECT
gcloud_flags
if [[ $queued == 1 ]]; then
  # --force deletes the node created by the queued resource as well.
  run gcloud compute tpus queued-resources delete "${QUEUED_RESOURCE:-$TPU_NAME-qr}" \
    "${GCLOUD_FLAGS[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --quiet
fi
