#!/usr/bin/env bash
# Start task of the optional `run_on_host` Batch pool (infra/modules/batch.bicep).
#
# Runs as root (pool-scope admin auto-user) on every node when it joins the pool
# and after each reboot, so every step is idempotent. It:
#   1. installs Docker (so `container:` jobs, `services:` and `docker build` work),
#   2. installs the GitHub Actions runner RUNNER_VERSION into
#      /opt/actions-runner/<version> (sha256-checked) and points
#      /opt/actions-runner/current at it,
#   3. installs /opt/runner-dispatch/entrypoint.sh (the runner-image entrypoint,
#      passed in base64 as RUNNER_ENTRYPOINT_B64) and /opt/runner-dispatch/run-on-host.sh,
#      the command a Batch task runs: it copies the runner into the task's own
#      working directory and hands over to the entrypoint (JIT or registration).
set -Eeuo pipefail
set +x

: "${RUNNER_VERSION:?RUNNER_VERSION is required}"
: "${RUNNER_SHA256:?RUNNER_SHA256 is required}"
: "${RUNNER_ENTRYPOINT_B64:?RUNNER_ENTRYPOINT_B64 is required}"
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

install_dir="/opt/actions-runner/${RUNNER_VERSION}"
if [ ! -x "${install_dir}/run.sh" ]; then
  log "installing actions/runner ${RUNNER_VERSION} (${RUNNER_ARCH})"
  tmp="$(mktemp -d)"
  tarball="actions-runner-linux-${RUNNER_ARCH}-${RUNNER_VERSION}.tar.gz"
  curl -fsSL --retry 5 --retry-delay 5 -o "${tmp}/${tarball}" \
    "https://github.com/actions/runner/releases/download/v${RUNNER_VERSION}/${tarball}"
  echo "${RUNNER_SHA256}  ${tmp}/${tarball}" | sha256sum -c -
  mkdir -p "${install_dir}.partial"
  tar -xzf "${tmp}/${tarball}" -C "${install_dir}.partial"
  "${install_dir}.partial/bin/installdependencies.sh"
  rm -rf "${install_dir}" "${tmp}"
  mv "${install_dir}.partial" "${install_dir}"
fi
ln -sfn "${install_dir}" /opt/actions-runner/current

mkdir -p /opt/runner-dispatch
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
