#!/usr/bin/env bash
# Build the runner-dispatch Function App package:
#
#   dist/functionapp/                    the app root, as the Functions host sees it
#     host.json                          from the repository root
#     <function>/function.json           one folder per function, from function_app/<function>/
#     runner-dispatch                    the release binary (the custom handler), named as
#                                        host.json's customHandler.description.defaultExecutablePath
#     runners.toml                       the pools file (POOLS_FILE, default ./runners.toml;
#                                        the example file is refused: its owner is octo-org)
#   dist/runner-dispatch-functionapp.zip the same tree, zipped, for deployment
#
# Usage: scripts/package.sh [--no-build]
# Environment:
#   TARGET=x86_64-unknown-linux-musl   the default: a static binary, which runs on any Linux
#                                      x86-64 host whatever its glibc (rustup target add
#                                      x86_64-unknown-linux-musl; apt-get install musl-tools).
#                                      TARGET=host builds for this machine (glibc): the
#                                      package then checks it needs no newer glibc than
#                                      MAX_GLIBC (default 2.31, Debian 11's, the oldest
#                                      Functions Linux image still in service).
#   CARGO_PROFILE=release              cargo profile (default release)
#   POOLS_FILE=path/to/runners.toml    pools file to ship (default ./runners.toml); checked
#                                      with `check-config --pools-only` before it is shipped
#   NO_POOLS_FILE=1                    ship none: the app reads RUNNER_DISPATCH_CONFIG_TOML
#                                      (Key Vault secret runners-toml, poolsFileFromKeyVault)
#   ALLOW_EXAMPLE_POOLS=1              ship runners.example.toml anyway (a demo app only:
#                                      every real delivery would get 403)
#   DIST_DIR=dist                      output directory (relative to the repository, or absolute)
#   BINARY=path/to/runner-dispatch     ship this prebuilt binary instead of the cargo build
#                                      output (implies --no-build; tests use it)
#   ZIPPER=zip|python                  zip with the zip CLI or python3's zipfile (default:
#                                      zip when installed, else python3)
#
# Zip permissions: Linux Functions hosts start the handler only if its executable
# bit survives. This script stores Unix modes in the zip (0755 for the binary) and
# checks them afterwards. Do not re-zip the package on Windows or with tools that
# drop Unix attributes. See docs/deploy.md ("Permission denied" troubleshooting).
set -Eeuo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"

build=1
for arg in "$@"; do
  case "${arg}" in
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,30p' "$0"
      exit 0
      ;;
    *)
      echo "package.sh: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

dist="${DIST_DIR:-dist}"
case "${dist}" in
  /*) ;;
  *) dist="${root}/${dist}" ;;
esac
app_dir="${dist}/functionapp"
zip_path="${dist}/runner-dispatch-functionapp.zip"
profile="${CARGO_PROFILE:-release}"
target="${TARGET:-x86_64-unknown-linux-musl}"
[ "${target}" = host ] && target=""
max_glibc="${MAX_GLIBC:-2.31}"

warn() { printf 'package.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'package.sh: error: %s\n' "$*" >&2
  exit 1
}

[ -f host.json ] || die "host.json is missing at the repository root"
[ -d function_app ] || die "function_app/ is missing (one folder per function, each with function.json)"
# The host starts the file host.json names; ship the binary under exactly that name.
exe="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["customHandler"]["description"]["defaultExecutablePath"])' host.json 2>/dev/null)" ||
  die "host.json has no customHandler.description.defaultExecutablePath (or is not valid JSON)"
case "${exe}" in
  /*)
    # The loader workaround of docs/deploy.md ("Permission denied"): host.json starts a
    # program outside the package, which is given runner-dispatch as its argument.
    warn "host.json starts ${exe}, outside the package; shipping the binary as runner-dispatch"
    exe=runner-dispatch
    ;;
  "" | */* | .*) die "host.json's defaultExecutablePath '${exe}' must be a file name at the app root (or an absolute path)" ;;
esac

# ---- build ------------------------------------------------------------------
cargo_args=(build --locked --profile "${profile}")
if [ -n "${target}" ]; then
  cargo_args+=(--target "${target}")
fi
[ -n "${BINARY:-}" ] && build=0
if [ "${build}" -eq 1 ]; then
  echo "package.sh: cargo ${cargo_args[*]}"
  cargo "${cargo_args[@]}"
fi
profile_dir="${profile}"
[ "${profile}" = "dev" ] && profile_dir="debug"
if [ -n "${BINARY:-}" ]; then
  binary="${BINARY}"
elif [ -n "${target}" ]; then
  binary="target/${target}/${profile_dir}/runner-dispatch"
else
  binary="target/${profile_dir}/runner-dispatch"
fi
if [ ! -f "${binary}" ] || [ ! -x "${binary}" ]; then
  die "binary ${binary} not found or not executable (build it, or drop --no-build)"
fi

# ---- the binary must run on the Flex host: Linux x86-64, glibc no newer than its ----
python3 - "${binary}" "${max_glibc}" <<'PY' || die "${binary} will not run on the Functions host (above); build with TARGET=x86_64-unknown-linux-musl"
import re
import sys

path, ceiling = sys.argv[1], tuple(int(x) for x in sys.argv[2].split("."))
data = open(path, "rb").read()
problems = []
if data[:4] != b"\x7fELF":
    problems.append("not an ELF executable")
else:
    if data[4] != 2:
        problems.append("not a 64-bit ELF (EI_CLASS)")
    if data[5] != 1:
        problems.append("not little-endian (EI_DATA)")
    if int.from_bytes(data[18:20], "little") != 62:
        problems.append("not x86-64 (e_machine)")
    # The versions the dynamic linker must find: GLIBC_x.y references in the binary.
    needed = {tuple(int(p) for p in m.groups() if p) for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?", data)}
    newest = max(needed, default=None)
    if newest and newest > ceiling:
        problems.append(f"needs glibc {'.'.join(map(str, newest))}, newer than {sys.argv[2]} (MAX_GLIBC)")
    kind = f"dynamic, glibc up to {'.'.join(map(str, newest))}" if newest else "static (no glibc)"
for p in problems:
    print(f"package.sh: error: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"package.sh: binary is Linux x86-64, {kind}")
PY

# ---- assemble dist/functionapp ------------------------------------------------
rm -rf "${app_dir}" "${zip_path}"
mkdir -p "${app_dir}"

install -m 0644 host.json "${app_dir}/host.json"

functions=0
for dir in function_app/*/; do
  name="$(basename "${dir}")"
  if [ ! -f "${dir}function.json" ]; then
    warn "function_app/${name} has no function.json: skipped"
    continue
  fi
  mkdir -p "${app_dir}/${name}"
  install -m 0644 "${dir}function.json" "${app_dir}/${name}/function.json"
  functions=$((functions + 1))
done
[ "${functions}" -gt 0 ] || die "no function_app/<name>/function.json found"

install -m 0755 "${binary}" "${app_dir}/${exe}"

pools_file="${POOLS_FILE:-runners.toml}"
if [ "${NO_POOLS_FILE:-0}" = 1 ]; then
  warn "no pools file shipped: the app needs RUNNER_DISPATCH_CONFIG_TOML (Key Vault secret runners-toml)"
else
  if [ ! -f "${pools_file}" ]; then
    if [ "${ALLOW_EXAMPLE_POOLS:-0}" = 1 ] && [ -f runners.example.toml ]; then
      warn "shipping runners.example.toml (ALLOW_EXAMPLE_POOLS=1): a demo only, its owner is octo-org"
      pools_file=runners.example.toml
    else
      die "no pools file at ${pools_file}: write runners.toml from the deployment's outputs (docs/deploy.md step 5) or set POOLS_FILE; NO_POOLS_FILE=1 when the pools come from Key Vault"
    fi
  elif [ "${ALLOW_EXAMPLE_POOLS:-0}" != 1 ] && cmp -s "${pools_file}" runners.example.toml; then
    die "${pools_file} is the example pools file (owner octo-org): every delivery would be refused with 403; write your own (docs/deploy.md step 5)"
  fi
  # The same validation the app runs at start, so a bad file fails here, not in Azure.
  checker="${binary}"
  [ -n "${CHECK_BINARY:-}" ] && checker="${CHECK_BINARY}"
  if "${checker}" --version >/dev/null 2>&1; then
    RUNNER_DISPATCH_CONFIG="${pools_file}" RUNNER_DISPATCH_CONFIG_TOML="" "${checker}" check-config --pools-only ||
      die "${pools_file} has the problems above"
  else
    warn "cannot run ${checker} here to check ${pools_file}: run 'runner-dispatch check-config --pools-only' yourself"
  fi
  install -m 0644 "${pools_file}" "${app_dir}/runners.toml"
fi

# ---- zip (Unix modes kept) ----------------------------------------------------
# Entries are relative to the app root: host.json must sit at the top of the zip.
abs_zip="${zip_path}"
zipper="${ZIPPER:-}"
if [ -z "${zipper}" ]; then
  zipper=python
  command -v zip >/dev/null 2>&1 && zipper=zip
fi
if [ "${zipper}" = zip ]; then
  (cd "${app_dir}" && zip -q -r -X "${abs_zip}" .)
elif [ "${zipper}" = python ]; then
  # zipfile's CLI records each file's st_mode in the entry's external attributes.
  (cd "${app_dir}" && python3 -m zipfile -c "${abs_zip}" ./*)
else
  die "ZIPPER=${zipper}: use zip or python"
fi

# ---- check what we built --------------------------------------------------------
python3 - "${abs_zip}" "${exe}" <<'PY'
import stat
import sys
import zipfile

path, exe = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(path) as zf:
    names = {i.filename.lstrip("./"): i for i in zf.infolist()}
    problems = []
    if "host.json" not in names:
        problems.append("host.json is not at the root of the zip")
    binary = names.get(exe)
    if binary is None:
        problems.append(f"{exe} (host.json's defaultExecutablePath) is not at the root of the zip")
    else:
        mode = (binary.external_attr >> 16) & 0o7777
        if binary.create_system != 3 or not mode & stat.S_IXUSR:
            problems.append(
                f"{exe} has no Unix executable bit in the zip (mode {oct(mode)}, "
                f"create_system {binary.create_system})"
            )
    functions = sorted(n.split("/")[0] for n in names if n.endswith("/function.json"))
    if problems:
        for p in problems:
            print(f"package.sh: error: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"package.sh: functions: {', '.join(functions)}")
PY

size="$(du -h "${zip_path}" | cut -f1)"
echo "package.sh: wrote ${zip_path#"${root}/"} (${size}) from ${app_dir#"${root}/"}/"
