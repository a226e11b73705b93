#!/usr/bin/env bash
# Start task of the optional `run_on_host` Batch pool (infra/modules/batch.bicep).
#
# Runs as root (pool-scope admin auto-user) on every node when it joins the pool
# and after each reboot, so every step is idempotent. It:
#   1. installs Docker (so `container:` jobs, `services:` and `docker build` work),
#   2. installs the GitHub Actions runner RUNNER_VERSION ("latest" by default: each new
#      node gets the newest release, since GitHub stops giving jobs to runners more than
#      30 days behind) into /opt/actions-runner/<version>, sha256-checked by
#      runner-image/fetch-runner.sh (passed in base64 as RUNNER_FETCH_B64), and points
#      /opt/actions-runner/current at it,
#   3. installs /opt/runner-dispatch/entrypoint.sh (the runner-image entrypoint,
#      passed in base64 as RUNNER_ENTRYPOINT_B64) and /opt/runner-dispatch/run-on-host.sh,
#      the command a Batch task runs: it copies the runner into the task's own
#      working directory and hands over to the entrypoint (JIT or registration).
set -Eeuo pipefail
set +x

RUNNER_VERSION="${RUNNER_VERSION:-latest}"
RUNNER_SHA256="${RUNNER_SHA256:-}"
: "${RUNNER_ENTRYPOINT_B64:?RUNNER_ENTRYPOINT_B64 is required}"
: "${RUNNER_FETCH_B64:?RUNNER_FETCH_B64 is required}"
RUNNER_ARCH="${RUNNER_ARCH:-x64}"

log() { printf '%s batch-host-start: %s\n' "$(date -u +%FT%TZ)" "$*"; }

export DEBIAN_FRONTEND=noninteractive

apt_install() {
  # The node agent or unattended-upgrades may hold the dpkg lock for a while.
  local tries=0
  until apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
      log "apt-get install $* failed ${tries} times"
      return 1
    fi
    sleep 15
    apt-get -o DPkg::Lock::Timeout=300 update
  done
}

if ! command -v docker >/dev/null 2>&1; then
  log "installing Docker"
  apt-get -o DPkg::Lock::Timeout=300 update
  apt_install ca-certificates curl git jq docker.io
fi
systemctl enable --now docker

mkdir -p /opt/runner-dispatch /opt/actions-runner
printf '%s' "${RUNNER_FETCH_B64}" | base64 -d > /opt/runner-dispatch/fetch-runner.sh
chmod 0755 /opt/runner-dispatch/fetch-runner.sh
install_dir=""
if [ "${RUNNER_VERSION}" != latest ] && [ -x "/opt/actions-runner/${RUNNER_VERSION#v}/run.sh" ]; then
  install_dir="/opt/actions-runner/${RUNNER_VERSION#v}"
else
  log "installing actions/runner ${RUNNER_VERSION} (${RUNNER_ARCH})"
  partial="/opt/actions-runner/.partial"
  rm -rf "${partial}"
  mkdir -p "${partial}"
  (cd "${partial}" && RUNNER_VERSION="${RUNNER_VERSION}" RUNNER_SHA256="${RUNNER_SHA256}" RUNNER_ARCH="${RUNNER_ARCH}" \
    /opt/runner-dispatch/fetch-runner.sh)
  version="$(cat "${partial}/.runner-version")"
  install_dir="/opt/actions-runner/${version}"
  if [ -x "${install_dir}/run.sh" ]; then
    rm -rf "${partial}"
  else
    "${partial}/bin/installdependencies.sh"
    rm -rf "${install_dir}"
    mv "${partial}" "${install_dir}"
  fi
fi
ln -sfn "${install_dir}" /opt/actions-runner/current

printf '%s' "${RUNNER_ENTRYPOINT_B64}" | base64 -d > /opt/runner-dispatch/entrypoint.sh.new
chmod 0755 /opt/runner-dispatch/entrypoint.sh.new
mv /opt/runner-dispatch/entrypoint.sh.new /opt/runner-dispatch/entrypoint.sh

cat > /opt/runner-dispatch/run-on-host.sh.new <<'WRAPPER'
#!/usr/bin/env bash
# Batch task command for run_on_host pools: one private copy of the runner per task
# (config files and _work must not be shared between tasks on the same node).
set -Eeuo pipefail
set +x
dest="${AZ_BATCH_TASK_WORKING_DIR:?not running as a Batch task}/actions-runner"
rm -rf "${dest}"
mkdir -p "${dest}"
cp -a /opt/actions-runner/current/. "${dest}/"
export RUNNER_HOME="${dest}"
# The task runs as the pool's admin auto-user (root) so jobs can use Docker.
export RUNNER_ALLOW_RUNASROOT=1
exec /opt/runner-dispatch/entrypoint.sh "$@"
WRAPPER
chmod 0755 /opt/runner-dispatch/run-on-host.sh.new
mv /opt/runner-dispatch/run-on-host.sh.new /opt/runner-dispatch/run-on-host.sh

log "ready: docker $(docker --version | cut -d' ' -f3 | tr -d ,) runner ${RUNNER_VERSION}"
