#!/usr/bin/env bash
# Launch multi-host training: the same command on every host of the slice, in the background.
#
#   tpu_scripts/train.sh [--dry-run] [--t5x] [--foreground] [--gin.KEY=VALUE ...]
#                        [--seqio_additional_cache_dirs=DIR]
#
# Default: `python3 -m jaxrec.train --gin_file=$GIN_FILE --gin.MODEL_DIR=$MODEL_DIR ...`; the
# trainer calls jax.distributed.initialize() itself on a pod. --t5x runs
# `python3 -m t5x.train --gin_search_paths=gin` with t5x's flags instead (GIN_FILE then
# gin/t5x/finetune_jaxrec.gin or pretrain_jaxrec.gin; t5x finds its own configs/runs/*.gin).
# Extra --gin.KEY=VALUE arguments are passed through, and --seqio_additional_cache_dirs (where
# seqio's offline cache of the tasks is, for --gin.USE_CACHED_TASKS=True; both trainers' flag). Output: ~/LOG_DIR/train.log on every
# host (watch it with logs.sh). --foreground keeps the ssh session attached instead.
# REMOTE_ENV (e.g. "JAXREC_BEAUTY_DIR=/home/me/data/Beauty") is set for the command: the seqio
# task modules find their dataset through such variables.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

use_t5x=0
foreground=0
extra=()
for arg in "${REST_ARGS[@]+"${REST_ARGS[@]}"}"; do
  case "$arg" in
    --t5x) use_t5x=1 ;;
    --foreground) foreground=1 ;;
    --gin.*=* | --gin_bindings=* | --gin_search_paths=* | --seqio_additional_cache_dirs=*)
      extra+=("$arg") ;;
    *) die "train.sh: unknown argument $arg" ;;
  esac
done

require TPU_NAME ZONE PROJECT GIN_FILE
require_gcs_model_dir
gcloud_flags
# jaxrec.train calls jax.distributed.initialize() when told it is one of several hosts.
multihost="${MULTIHOST:-$(is_multihost "$ACCELERATOR_TYPE")}"

if [[ $use_t5x == 1 ]]; then
  cmd="python3 -m t5x.train --gin_search_paths=gin --gin_file=$GIN_FILE --gin.MODEL_DIR=\\\"$MODEL_DIR\\\" --alsologtostderr"
else
  cmd="python3 -m jaxrec.train --multihost=$multihost --gin_file=$GIN_FILE --gin.MODEL_DIR=$MODEL_DIR"
fi
for arg in "${extra[@]+"${extra[@]}"}"; do
  cmd+=" $(quote_arg "$arg")"
done
if [[ -n "${REMOTE_ENV:-}" ]]; then
  cmd="env $REMOTE_ENV $cmd"
fi
if [[ $foreground == 1 ]]; then
  tpu_ssh all "cd ~/$REMOTE_DIR && $cmd 2>&1 | tee ~/$LOG_DIR/train.log"
else
  tpu_ssh all "cd ~/$REMOTE_DIR && nohup $cmd > ~/$LOG_DIR/train.log 2>&1 < /dev/null &"
fi
