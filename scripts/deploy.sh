#!/usr/bin/env bash
# Deploy runner-dispatch to Azure: infrastructure (Bicep), secrets, then the code.
#
# Usage:
#   scripts/deploy.sh -g <resource-group> [-l <location>] [-p infra/my.bicepparam]
#                     [--skip-infra] [--skip-code] [--skip-package]
#
# The order of docs/deploy.md: the infrastructure first (deployment name
# "runner-dispatch"), its outputs printed; the pools file is written from those outputs
# (step 5); then the code. Without a pools file (POOLS_FILE, default ./runners.toml) the
# script stops after the infrastructure and says what to do: write it, then run again
# with --skip-infra. Keep the parameter file in infra/ (its `using './main.bicep'`
# resolves next to it).
#
# Optional environment, to store secrets in Key Vault (read from files, never argv):
#   WEBHOOK_SECRET_FILE=path   -> secret github-webhook-secret
#   APP_PRIVATE_KEY_FILE=path  -> secret github-app-private-key (the App's .pem)
#   RUNNERS_TOML_FILE=path     -> secret runners-toml (used when the Bicep parameter
#                                 poolsFileFromKeyVault is true; then no pools file is
#                                 packaged)
#   POOLS_FILE=path            -> the pools file to package (default ./runners.toml)
# The signed-in identity needs Owner (or Contributor + User Access Administrator) on
# the resource group(s): the Bicep creates role assignments and two custom role
# definitions (Role Based Access Control Administrator cannot write definitions). To write secrets it needs Key Vault Secrets Officer on the vault
# (pass your object id as the Bicep parameter deployerPrincipalId).
#
# Requires Azure CLI 2.60 or later (Bicep is installed by `az bicep install` on
# first use). Flex Consumption apps take code through `config-zip`, which the CLI
# sends to the app's One Deploy endpoint; no build runs on Azure.
set -Eeuo pipefail

cd "$(dirname "$0")/.."

rg=""
location=""
params="infra/main.bicepparam"
do_infra=1
do_code=1
do_package=1

usage() { sed -n '2,33p' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -g | --resource-group) rg="$2"; shift 2 ;;
    -l | --location) location="$2"; shift 2 ;;
    -p | --parameters) params="$2"; shift 2 ;;
    --skip-infra) do_infra=0; shift ;;
    --skip-code) do_code=0; shift ;;
    --skip-package) do_package=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "${rg}" ] || { usage >&2; exit 2; }

log() { printf 'deploy.sh: %s\n' "$*"; }
# One name, as in docs/deploy.md: each run replaces the deployment record, so its outputs
# are always the latest.
deployment="runner-dispatch"

# ---- 1. resource group and infrastructure -----------------------------------------
if [ "${do_infra}" -eq 1 ]; then
  if ! az group show --name "${rg}" --output none 2>/dev/null; then
    [ -n "${location}" ] || { echo "deploy.sh: resource group ${rg} does not exist; pass -l <location>" >&2; exit 2; }
    log "creating resource group ${rg} in ${location}"
    az group create --name "${rg}" --location "${location}" --output none
  fi
  log "deploying infra/main.bicep with ${params} (deployment ${deployment})"
  az deployment group create \
    --resource-group "${rg}" \
    --name "${deployment}" \
    --template-file infra/main.bicep \
    --parameters "${params}" \
    --output none
else
  az deployment group show --resource-group "${rg}" --name "${deployment}" --output none 2>/dev/null ||
    { echo "deploy.sh: no deployment named ${deployment} in ${rg}: run without --skip-infra first" >&2; exit 1; }
fi

output() {
  az deployment group show --resource-group "${rg}" --name "${deployment}" \
    --query "properties.outputs.$1.value" --output tsv
}
app="$(output functionAppName)"
vault="$(output keyVaultName)"
webhook_url="$(output webhookUrl)"
log "function app ${app}, key vault ${vault}"
log "deployment outputs (for runners.toml, docs/deploy.md step 5):"
az deployment group show --resource-group "${rg}" --name "${deployment}" \
  --query "properties.outputs.{webhookUrl:webhookUrl.value, imagePullIdentityId:imagePullIdentityId.value, runnerIdentityId:runnerIdentityId.value, aciSubnetId:aciSubnetId.value, containerGroupResourceGroup:containerGroupResourceGroup.value, batchPoolIds:batchPoolIds.value}" \
  --output jsonc

# ---- 2. secrets (optional) ----------------------------------------------------------
secrets_changed=0
set_secret() {
  local name="$1" file="$2"
  [ -n "${file}" ] || return 0
  [ -f "${file}" ] || { echo "deploy.sh: ${file} not found" >&2; exit 1; }
  log "setting Key Vault secret ${name} from ${file}"
  az keyvault secret set --vault-name "${vault}" --name "${name}" --file "${file}" --output none
  secrets_changed=1
}
set_secret github-webhook-secret "${WEBHOOK_SECRET_FILE:-}"
set_secret github-app-private-key "${APP_PRIVATE_KEY_FILE:-}"
set_secret runners-toml "${RUNNERS_TOML_FILE:-}"

if [ "${secrets_changed}" -eq 1 ]; then
  # App Service caches Key Vault references for up to 24 h; ask for a refetch now.
  app_id="$(az functionapp show --resource-group "${rg}" --name "${app}" --query id --output tsv)"
  log "refreshing the app's Key Vault references"
  az rest --method post \
    --url "${app_id}/config/configreferences/appsettings/refresh?api-version=2022-03-01" \
    --output none || log "refresh failed; references refresh within 24 h or on the next settings change"
fi

# ---- 3. package and code ------------------------------------------------------------
pools_file="${POOLS_FILE:-runners.toml}"
if [ "${do_code}" -eq 1 ] && [ "${do_package}" -eq 1 ] && [ -z "${RUNNERS_TOML_FILE:-}" ] && [ ! -f "${pools_file}" ]; then
  cat <<EOF

deploy.sh: the infrastructure is deployed; the code is not, because there is no pools
file at ${pools_file} yet. Write it from the outputs above (docs/deploy.md step 5), check
it with 'runner-dispatch check-config --pools-only', then run:

  scripts/deploy.sh -g ${rg} --skip-infra
EOF
  exit 3
fi
if [ "${do_code}" -eq 1 ]; then
  if [ "${do_package}" -eq 1 ]; then
    if [ -n "${RUNNERS_TOML_FILE:-}" ]; then
      NO_POOLS_FILE=1 scripts/package.sh
    else
      POOLS_FILE="${pools_file}" scripts/package.sh
    fi
  fi
  zip="dist/runner-dispatch-functionapp.zip"
  [ -f "${zip}" ] || { echo "deploy.sh: ${zip} not found (run scripts/package.sh)" >&2; exit 1; }
  log "deploying ${zip} to ${app}"
  az functionapp deployment source config-zip \
    --resource-group "${rg}" \
    --name "${app}" \
    --src "${zip}" \
    --build-remote false \
    --output none
fi

cat <<EOF

deploy.sh: done.
  Webhook URL:  ${webhook_url}
  Next:         point the GitHub App webhook (Workflow jobs events, content type
                application/json) at that URL, with the secret stored in
                ${vault}/github-webhook-secret. See docs/deploy.md.
  Check:        az functionapp function list -g ${rg} -n ${app} --query "[].name" -o tsv
EOF
