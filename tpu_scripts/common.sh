# Shared settings and helpers for the Cloud TPU scripts; sourced, not run.
#
# Variables (export them, or put them in a file named by TPU_CONFIG, which is sourced first):
#   TPU_NAME          TPU VM / pod slice name                       (required)
#   ZONE              e.g. us-central2-b                             (required)
#   PROJECT           Google Cloud project id                        (required)
#   ACCELERATOR_TYPE  e.g. v4-8, v4-32, v5litepod-16, v5p-8          (default v4-8)
#   RUNTIME_VERSION   TPU VM software version                        (default: by accelerator)
#   MODEL_DIR         gs://bucket/path: checkpoints and eval output  (required by train/eval)
#   GIN_FILE          gin file, relative to the jaxrec checkout      (required by train)
#   JAXREC_REPO       git URL of jaxrec, or a local sdist .tar.gz    (required by setup)
#   JAXREC_REF        git branch/tag/commit to check out            (default main)
#   REMOTE_DIR        jaxrec checkout on every host                  (default jaxrec, under ~)
#   LOG_DIR           log directory on every host                    (default jaxrec_logs, under ~)
#   DATASET_DIR       prepared dataset directory on the hosts (eval.sh's default --dataset)
#   REMOTE_ENV        VAR=value assignments for train/eval (e.g. JAXREC_BEAUTY_DIR=...)
#   QUEUED_RESOURCE   queued-resource id when created with --queued  (default TPU_NAME-qr)
#
# Every script accepts --dry-run: it then prints the exact commands it would run, one per
# line, and runs nothing.

set -euo pipefail

if [[ -n "${TPU_CONFIG:-}" ]]; then
  if [[ ! -f "$TPU_CONFIG" ]]; then
    echo "error: TPU_CONFIG=$TPU_CONFIG: no such file" >&2
    exit 2
  fi
  # shellcheck disable=SC1090
  source "$TPU_CONFIG"
fi

DRY_RUN=0
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
JAXREC_REF="${JAXREC_REF:-main}"
REMOTE_DIR="${REMOTE_DIR:-jaxrec}"
LOG_DIR="${LOG_DIR:-jaxrec_logs}"
# jax[tpu] matching setup.py's jax pin; libtpu wheels are on this index.
JAX_TPU_SPEC="${JAX_TPU_SPEC:-jax[tpu]>=0.10.2,<0.11}"
LIBTPU_INDEX="https://storage.googleapis.com/jax-releases/libtpu_releases.html"
# t5x and the two packages it imports that are not on PyPI, at the commits jaxrec is tested
# with; installed with --no-deps so their metadata cannot replace jax/flax/optax/seqio/clu.
T5X_REPO="${T5X_REPO:-https://github.com/google-research/t5x}"
T5X_REF="${T5X_REF:-cc342d419ec3e3e9c4bf1df33c82330cafdc1e16}"
AIRIO_REPO="${AIRIO_REPO:-https://github.com/google/airio}"
AIRIO_REF="${AIRIO_REF:-69897df7d9a427b947a9f7bb4164c7782b43e601}"
JESTIMATOR_REPO="${JESTIMATOR_REPO:-https://github.com/google-research/jestimator}"
JESTIMATOR_REF="${JESTIMATOR_REF:-326824a477feef6d92e6f44175000907a72899ca}"
# The registry packages t5x needs beyond jaxrec's own dependencies.
T5X_EXTRA_PACKAGES="fiddle jaxtyping chex cached_property grain"

die() {
  echo "error: $*" >&2
  exit 2
}

# require VAR...: fail with a message naming the first unset variable.
require() {
  local var
  for var in "$@"; do
    if [[ -z "${!var:-}" ]]; then
      die "$var is not set (export $var=... or set it in the file named by TPU_CONFIG; see docs/tpu.md)"
    fi
  done
}

# Default runtime (software) version for an accelerator generation.
default_runtime_version() {
  case "$1" in
    v2-* | v3-* | v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-* | v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no default RUNTIME_VERSION for ACCELERATOR_TYPE=$1; set RUNTIME_VERSION" ;;
  esac
}

# "true" when the slice spans several hosts: the count after the dash is above 8 for every
# generation (v4-8 / v5litepod-8 / v6e-8 are one host; v4-16, v5litepod-16 ... are pods).
is_multihost() {
  local n="${1##*-}"
  [[ "$n" =~ ^[0-9]+$ ]] || die "cannot read the size of ACCELERATOR_TYPE=$1"
  if ((n > 8)); then echo true; else echo false; fi
}

# Quote one argument for display so that the printed line can be pasted into a shell.
# A `--flag=value` argument is shown as --flag='value'.
quote_arg() {
  local a="$1" prefix=""
  if [[ "$a" =~ ^[A-Za-z0-9_./:=@,+%~-]+$ ]]; then
    printf '%s' "$a"
    return
  fi
  if [[ "$a" =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
    prefix="${BASH_REMATCH[1]}"
    a="${BASH_REMATCH[2]}"
  fi
  printf "%s'%s'" "$prefix" "${a//\'/\'\\\'\'}"
}

# run CMD ARGS...: print it (dry run) or run it.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    local first=1 a
    for a in "$@"; do
      if [[ $first == 1 ]]; then first=0; else printf ' '; fi
      quote_arg "$a"
    done
    printf '\n'
  else
    echo "+ $*" >&2
    "$@"
  fi
}

# The project/zone flags every gcloud TPU command takes.
gcloud_flags() {
  GCLOUD_FLAGS=("--project=$PROJECT" "--zone=$ZONE")
}

# tpu_ssh WORKER COMMAND: run a shell command on one worker (0, 1, ...) or on all of them.
tpu_ssh() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_FLAGS[@]}" "--worker=$1" \
    "--command=$2"
}

# parse_common ARGS...: handles --dry-run and -h/--help; leaves the rest in REST_ARGS.
parse_common() {
  REST_ARGS=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
      *) REST_ARGS+=("$1") ;;
    esac
    shift
  done
}

require_gcs_model_dir() {
  require MODEL_DIR
  if [[ "$MODEL_DIR" != gs://* ]]; then
    die "MODEL_DIR=$MODEL_DIR must be a gs:// path: on a pod every host reads and writes the same checkpoints"
  fi
}
