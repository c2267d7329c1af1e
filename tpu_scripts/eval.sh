#!/usr/bin/env bash
# Run `jaxrec eval` on the TPU host(s) and keep its JSON next to the checkpoints.
#
#   tpu_scripts/eval.sh [--dry-run] [--worker N|all] [-- JAXREC_EVAL_ARGS...]
#
# Runs `jaxrec eval --json ARGS` in ~/REMOTE_DIR on worker 0 (default) or on every host
# (--worker all: each host evaluates on its own chips, independently). Arguments after `--`
# go to `jaxrec eval` verbatim (default: EVAL_ARGS, or `--model_dir $MODEL_DIR --dataset
# $DATASET_DIR --mesh auto`: parameters sharded and prompts split over the host's chips,
# DATASET_DIR being a path on the hosts). The last stdout line (one JSON object) is written
# to ~/LOG_DIR/eval.json and copied to MODEL_DIR/eval/eval.json. REMOTE_ENV assignments are
# set for the command.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

worker=0
eval_args=()
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --worker)
      [[ $# -ge 2 ]] || die "eval.sh: --worker needs a value"
      worker="$2"
      shift
      ;;
    --)
      shift
      eval_args=("$@")
      break
      ;;
    *) die "eval.sh: unknown argument $1 (pass jaxrec eval arguments after --)" ;;
  esac
  shift
done

require TPU_NAME ZONE PROJECT
require_gcs_model_dir
gcloud_flags

if [[ ${#eval_args[@]} -eq 0 ]]; then
  if [[ -n "${EVAL_ARGS:-}" ]]; then
    read -r -a eval_args <<<"$EVAL_ARGS"
  else
    require DATASET_DIR
    eval_args=(--model_dir "$MODEL_DIR" --dataset "$DATASET_DIR" --mesh auto)
  fi
fi
quoted=""
for arg in "${eval_args[@]}"; do
  quoted+=" $(quote_arg "$arg")"
done
prefix=""
if [[ -n "${REMOTE_ENV:-}" ]]; then
  prefix="env $REMOTE_ENV "
fi
tpu_ssh "$worker" "set -o pipefail; cd ~/$REMOTE_DIR && ${prefix}jaxrec eval$quoted --json 2> ~/$LOG_DIR/eval.log | tee ~/$LOG_DIR/eval.out && tail -n 1 ~/$LOG_DIR/eval.out > ~/$LOG_DIR/eval.json && gsutil cp ~/$LOG_DIR/eval.json $MODEL_DIR/eval/eval.json"
