#!/usr/bin/env bash
# Offline checks of the deployment files (infra/, scripts/, runner-image/):
#   bash -n and shellcheck (when installed) on every shell script,
#   check_bicep.py (when pycep-parser is installed), YAML syntax of the example workflow.
# Usage: infra/scripts/lint.sh        (exit 1 on any finding)
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

status=0
scripts=(scripts/package.sh scripts/deploy.sh runner-image/entrypoint.sh infra/scripts/batch-host-start.sh infra/scripts/lint.sh)
for f in "${scripts[@]}"; do
  [ -f "$f" ] || continue
  bash -n "$f" || status=1
done
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck "${scripts[@]}" || status=1
else
  echo "lint.sh: shellcheck not installed (apt-get install shellcheck): skipped"
fi

if python3 -c 'import pycep' 2>/dev/null; then
  python3 infra/scripts/check_bicep.py || status=1
else
  echo "lint.sh: pycep-parser not installed (pip install pycep-parser): Bicep check skipped"
fi

if python3 -c 'import yaml' 2>/dev/null; then
  python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' runner-image/update-runner.yml || status=1
fi

if command -v az >/dev/null 2>&1; then
  az bicep build --file infra/main.bicep --stdout >/dev/null || status=1
fi

[ "$status" -eq 0 ] && echo "lint.sh: all checks passed"
exit "$status"
