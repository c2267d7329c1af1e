#!/usr/bin/env bash
# Copy results back: the logs of one host (scp) and MODEL_DIR without checkpoints (gsutil).
#
#   tpu_scripts/fetch.sh [--dry-run] [--worker N] [--with-checkpoints] [DEST]
#
# DEST defaults to RESULTS_DIR or ./tpu_results/TPU_NAME. From MODEL_DIR come config.gin,
# model_config.json, vocabulary.json, train_metrics.jsonl, TensorBoard events and eval/;
# checkpoints/ only with --with-checkpoints (they are large).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

worker=0
with_ckpt=0
dest=""
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --worker)
      [[ $# -ge 2 ]] || die "fetch.sh: --worker needs a value"
      worker="$2"
      shift
      ;;
    --with-checkpoints) with_ckpt=1 ;;
    -*) die "fetch.sh: unknown argument $1" ;;
    *) dest="$1" ;;
  esac
  shift
done

require TPU_NAME ZONE PROJECT
require_gcs_model_dir
gcloud_flags
dest="${dest:-${RESULTS_DIR:-tpu_results/$TPU_NAME}}"

run mkdir -p "$dest/worker$worker" "$dest/model_dir"
run gcloud compute tpus tpu-vm scp --recurse "$TPU_NAME:~/$LOG_DIR/*" "$dest/worker$worker/" \
  "${GCLOUD_FLAGS[@]}" "--worker=$worker"
if [[ $with_ckpt == 1 ]]; then
  run gsutil -m rsync -r "$MODEL_DIR" "$dest/model_dir"
else
  run gsutil -m rsync -r -x '^checkpoints/.*' "$MODEL_DIR" "$dest/model_dir"
fi
