#!/usr/bin/env bash
# Show (or follow) a log written on a TPU host.
#
#   tpu_scripts/logs.sh [--dry-run] [--worker N] [--follow] [--lines N] [--file NAME]
#
# Default: the last 100 lines of ~/LOG_DIR/train.log on worker 0 (process 0 logs the metrics;
# look at other workers when a host fails). --file eval.log shows the evaluation log.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

worker=0
follow=""
lines=100
file=train.log
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --worker | --lines | --file)
      [[ $# -ge 2 ]] || die "logs.sh: $1 needs a value"
      case "$1" in
        --worker) worker="$2" ;;
        --lines) lines="$2" ;;
        --file) file="$2" ;;
      esac
      shift
      ;;
    --follow | -f) follow=" -F" ;;
    *) die "logs.sh: unknown argument $1" ;;
  esac
  shift
done

require TPU_NAME ZONE PROJECT
gcloud_flags
tpu_ssh "$worker" "tail -n $lines$follow ~/$LOG_DIR/$file"
