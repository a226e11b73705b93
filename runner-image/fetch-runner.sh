#!/usr/bin/env bash
# Downloads the GitHub Actions runner into the current directory and checks its sha256.
#
#   RUNNER_VERSION  a release (2.330.0) or "latest" (the default): GitHub stops sending jobs
#                   to runners more than 30 days behind the latest release, so a build that
#                   follows the docs later must not get an old one.
#   RUNNER_SHA256   the tarball's sha256; empty: taken from the release itself (the asset's
#                   published digest, else the release notes' <!-- BEGIN SHA linux-x64 -->
#                   marker). A build fails when no checksum can be found or it differs.
#   RUNNER_ARCH     x64 (default) or arm64.
#   GITHUB_TOKEN    optional: a GitHub token for the releases API. Without one GitHub allows
#                   60 API requests an hour per IP address, shared by every build behind the
#                   same address (ACR Tasks' build agents, a NAT gateway). Sent to the API
#                   only (not to the download), never printed, never on a command line.
# RUNNER_RELEASES_API and RUNNER_DOWNLOAD_BASE override GitHub's addresses (tests, mirrors).
set -euo pipefail

version="${RUNNER_VERSION:-latest}"
sha="${RUNNER_SHA256:-}"
arch="${RUNNER_ARCH:-x64}"
api="${RUNNER_RELEASES_API:-https://api.github.com/repos/actions/runner/releases}"
download="${RUNNER_DOWNLOAD_BASE:-https://github.com/actions/runner/releases/download}"

# GET a releases API URL, with the token when there is one: curl reads the header from
# stdin (printf is a shell builtin), so the token is on no process's command line.
api_get() {
  if [ -n "${GITHUB_TOKEN:-}" ]; then
    printf 'Authorization: Bearer %s\n' "${GITHUB_TOKEN}" \
      | curl -fsSL --retry 5 -H @- -H 'Accept: application/vnd.github+json' "$1"
  else
    curl -fsSL --retry 5 -H 'Accept: application/vnd.github+json' "$1"
  fi
}

if [ "${version}" = latest ] || [ -z "${sha}" ]; then
  if [ "${version}" = latest ]; then url="${api}/latest"; else url="${api}/tags/v${version#v}"; fi
  release="$(api_get "${url}")" || {
    echo "fetch-runner: ${url} refused (unauthenticated, GitHub allows 60 API requests an hour per address: set GITHUB_TOKEN, or pin RUNNER_VERSION and RUNNER_SHA256)" >&2
    exit 1
  }
  version="$(jq -r '.tag_name | ltrimstr("v")' <<<"${release}")"
  [[ "${version}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "fetch-runner: no release version at ${url}" >&2; exit 1; }
  asset="actions-runner-linux-${arch}-${version}.tar.gz"
  sha="$(jq -r --arg n "${asset}" '.assets[]? | select(.name == $n) | .digest // empty' <<<"${release}")"
  sha="${sha#sha256:}"
  if [ -z "${sha}" ]; then
    sha="$(jq -r '.body // ""' <<<"${release}" \
      | sed -n "s/.*<!-- BEGIN SHA linux-${arch} -->\([0-9a-f]\{64\}\)<!-- END SHA linux-${arch} -->.*/\1/p" | head -n1)"
  fi
fi
version="${version#v}"
[[ "${sha}" =~ ^[0-9a-f]{64}$ ]] || { echo "fetch-runner: no sha256 for runner ${version} (linux-${arch})" >&2; exit 1; }

tarball="actions-runner-linux-${arch}-${version}.tar.gz"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
curl -fsSL --retry 5 -o "${tmp}/${tarball}" "${download}/v${version}/${tarball}"
echo "${sha}  ${tmp}/${tarball}" | sha256sum -c - >/dev/null || { echo "fetch-runner: sha256 mismatch for ${tarball}" >&2; exit 1; }
tar -xzf "${tmp}/${tarball}" -C .
echo "${version}" > .runner-version
echo "fetch-runner: actions/runner ${version} (linux-${arch}), sha256 ${sha}"
