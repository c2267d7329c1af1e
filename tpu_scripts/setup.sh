#!/usr/bin/env bash
# Install jaxrec (and optionally t5x) on every host of the TPU VM / pod slice.
#
#   tpu_scripts/setup.sh [--dry-run] [--with-t5x] [--data LOCAL_DATASET_DIR]
#
# JAXREC_REPO is a git URL (cloned at JAXREC_REF into ~/REMOTE_DIR) or a local sdist
# (.tar.gz, copied to every host and unpacked there); either way the checkout keeps gin/ and
# tasks/ next to the package and is installed editable with `jax[tpu]`.
# --with-t5x     also install t5x, airio and jestimator from git at T5X_REF, AIRIO_REF and
#                JESTIMATOR_REF with `pip install --no-deps` (their metadata would pull flax,
#                optax, seqio and clu from git HEAD over jaxrec's pins), then the few registry
#                packages t5x imports (T5X_EXTRA_PACKAGES), for `python -m t5x.train`.
# --data DIR     copy a prepared dataset directory to ~/data/<name> on every host (small
#                datasets; large ones belong on GCS).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"

with_t5x=0
data_dir=""
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-t5x) with_t5x=1 ;;
    --data)
      [[ $# -ge 2 ]] || die "setup.sh: --data needs a directory"
      data_dir="$2"
      shift
      ;;
    *) die "setup.sh: unknown argument $1" ;;
  esac
  shift
done

require TPU_NAME ZONE PROJECT JAXREC_REPO
gcloud_flags

pip_tpu="pip install -U \"$JAX_TPU_SPEC\" -f $LIBTPU_INDEX"
if [[ "$JAXREC_REPO" == *.tar.gz ]]; then
  sdist="$(basename "$JAXREC_REPO")"
  run gcloud compute tpus tpu-vm scp "$JAXREC_REPO" "$TPU_NAME:~/$sdist" "${GCLOUD_FLAGS[@]}" \
    --worker=all
  get_code="rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR && tar xzf ~/$sdist -C ~/$REMOTE_DIR --strip-components=1"
else
  get_code="rm -rf ~/$REMOTE_DIR && git clone $JAXREC_REPO ~/$REMOTE_DIR && git -C ~/$REMOTE_DIR checkout $JAXREC_REF"
fi
tpu_ssh all "set -e; mkdir -p ~/$LOG_DIR; $get_code; $pip_tpu; pip install -e ~/$REMOTE_DIR"
if [[ $with_t5x == 1 ]]; then
  t5x_pkgs="git+$T5X_REPO@$T5X_REF git+$AIRIO_REPO@$AIRIO_REF git+$JESTIMATOR_REPO@$JESTIMATOR_REF"
  tpu_ssh all "set -e; pip install --no-deps $t5x_pkgs && pip install $T5X_EXTRA_PACKAGES"
fi
if [[ -n "$data_dir" ]]; then
  tpu_ssh all "mkdir -p ~/data"
  run gcloud compute tpus tpu-vm scp --recurse "$data_dir" "$TPU_NAME:~/data/" \
    "${GCLOUD_FLAGS[@]}" --worker=all
fi
# Every host must see the same number of TPU devices before training starts.
tpu_ssh all 'python3 -c "import jax; print(jax.process_index(), jax.device_count(), jax.local_device_count())"'
