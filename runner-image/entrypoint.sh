#!/usr/bin/env bash
# runner-dispatch runner entrypoint (Linux): starts one ephemeral GitHub Actions
# runner from the runner container contract (design.md) and exits when its job ends.
#
#   JIT mode:           RUNNER_JITCONFIG
#   registration mode:  RUNNER_URL, RUNNER_TOKEN, RUNNER_NAME, RUNNER_LABELS,
#                       RUNNER_GROUP, RUNNER_EPHEMERAL=1 (legacy, weaker)
#
# Secrets never reach job steps: they are copied into unexported shell variables
# and every token variable is removed from the environment before the runner
# starts. The runner receives them through ACTIONS_RUNNER_INPUT_* variables set
# on its own command only (the runner reads and then clears those), so they are
# never on a command line, where any process could read them.
#
# Optional:
#   RUNNER_HOME            runner directory (default: the image's /home/runner/actions-runner)
#   RUNNER_WORKDIR         work folder for registration mode (default: _work)
#   RUNNER_SECRET_VARS     extra variable names to remove, space-separated
#   RUNNER_SECRETS_VIA_ARGS=1  pass the secrets the classic way instead:
#                          `./run.sh --jitconfig <value>` and `./config.sh --token <value>`
#                          (for runner versions that ignore ACTIONS_RUNNER_INPUT_*;
#                          the value is then visible in the process list)
set -Eeuo pipefail
set +x # never trace: the values below are secrets

log() { printf '%s runner-entrypoint: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

RUNNER_HOME="${RUNNER_HOME:-/home/runner/actions-runner}"
cd "${RUNNER_HOME}"

# ---- take the secrets out of the environment ------------------------------
jitconfig="${RUNNER_JITCONFIG:-}"
reg_token="${RUNNER_TOKEN:-}"

secret_vars=(RUNNER_JITCONFIG RUNNER_TOKEN ACTIONS_RUNNER_INPUT_JITCONFIG ACTIONS_RUNNER_INPUT_TOKEN)
# Any *_TOKEN, *_JITCONFIG or *_SECRET passed to the container (GITHUB_TOKEN,
# GH_TOKEN, a renamed token variable...). A job that needs a token gets one from
# GitHub (secrets.GITHUB_TOKEN), never from the runner's environment.
while IFS= read -r name; do
  case "${name}" in
    *_TOKEN | *_JITCONFIG | *_SECRET) secret_vars+=("${name}") ;;
  esac
done < <(compgen -e)
# shellcheck disable=SC2206 # word splitting of a space-separated list is intended
secret_vars+=(${RUNNER_SECRET_VARS:-})
for name in "${secret_vars[@]}"; do
  unset "${name}" 2>/dev/null || true
done
unset RUNNER_SECRET_VARS
secrets_via_args="${RUNNER_SECRETS_VIA_ARGS:-0}"

# ---- signals: pass them to the runner so it can stop cleanly ----------------
child=0
# shellcheck disable=SC2317 # invoked by the traps below
forward() {
  local sig="$1"
  log "received SIG${sig}, stopping the runner"
  if [ "${child}" -ne 0 ] && kill -0 "${child}" 2>/dev/null; then
    kill "-${sig}" "${child}" 2>/dev/null || true
  else
    exit 143
  fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

# Wait for the runner; a trapped signal interrupts `wait`, so wait again until
# the child has really exited, then exit with its status.
wait_child() {
  local status=0
  while :; do
    wait "${child}" && status=0 || status=$?
    if ! kill -0 "${child}" 2>/dev/null; then
      break
    fi
  done
  log "runner exited with status ${status}"
  exit "${status}"
}

# ---- JIT mode ---------------------------------------------------------------
if [ -n "${jitconfig}" ]; then
  log "starting an ephemeral runner from its just-in-time configuration"
  if [ "${secrets_via_args}" = "1" ]; then
    ./run.sh --jitconfig "${jitconfig}" &
  else
    ACTIONS_RUNNER_INPUT_JITCONFIG="${jitconfig}" ./run.sh &
  fi
  child=$!
  unset jitconfig
  wait_child
fi

# ---- registration mode (legacy) ---------------------------------------------
if [ -z "${reg_token}" ]; then
  log "neither RUNNER_JITCONFIG nor RUNNER_TOKEN is set: nothing to run"
  exit 64
fi
: "${RUNNER_URL:?RUNNER_URL is required with RUNNER_TOKEN}"
runner_name="${RUNNER_NAME:-$(hostname)}"
runner_labels="${RUNNER_LABELS:-self-hosted}"
config_args=(
  --unattended
  --url "${RUNNER_URL}"
  --name "${runner_name}"
  --labels "${runner_labels}"
  --no-default-labels
  --work "${RUNNER_WORKDIR:-_work}"
  --disableupdate
  --replace
)
if [ -n "${RUNNER_GROUP:-}" ]; then
  config_args+=(--runnergroup "${RUNNER_GROUP}")
fi
if [ "${RUNNER_EPHEMERAL:-1}" = "1" ]; then
  config_args+=(--ephemeral)
else
  log "RUNNER_EPHEMERAL=${RUNNER_EPHEMERAL}: runner-dispatch expects ephemeral runners; registering as ephemeral anyway"
  config_args+=(--ephemeral)
fi

log "registering ${runner_name} at ${RUNNER_URL} with labels ${runner_labels}"
# The token reaches config.sh only, through its own environment (not argv).
if [ "${secrets_via_args}" = "1" ]; then
  ./config.sh "${config_args[@]}" --token "${reg_token}"
else
  ACTIONS_RUNNER_INPUT_TOKEN="${reg_token}" ./config.sh "${config_args[@]}"
fi
unset reg_token

log "starting the runner"
./run.sh &
child=$!
wait_child
