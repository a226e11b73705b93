#!/usr/bin/env python3
"""Every documented image build sends a context that holds what its Dockerfile copies.

Reads the build commands quoted in the docs and the example workflow (`az acr build`,
`az acr task create`, `docker build`, with their backslash-continued lines), works out
each one's context and Dockerfile, and checks that every COPY/ADD source of that
Dockerfile (other than `--from=` a build stage) exists in the context:
  - a local context is a directory of this repository; `--file` is a path from the
    repository root (az acr build uploads the Dockerfile with the context);
  - a Git context of this repository (`https://github.com/ORG/runner-dispatch.git#ref:dir`,
    ACR Tasks' and Docker's syntax) is `dir` of this repository, the repository root
    without `:dir`; `--file` is a path inside that context.
A build whose context lacks a file its Dockerfile copies fails at its first COPY: the
ACR Task of runner-image/README.md once sent the repository root to a Dockerfile that
copies fetch-runner.sh and entrypoint.sh from runner-image/.

It also checks that no runner Dockerfile declares a token or secret build argument
(`ARG *TOKEN*`, `*SECRET*`, `*PASSWORD*`) in its last stage, the one that becomes the
image: an argument a RUN uses is recorded in that image's history. A token for the
releases API belongs to an earlier stage, whose history is never pushed.

Usage: python3 infra/scripts/check_build_contexts.py   (exit 1 on any problem)
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCES = ["runner-image/README.md", "runner-image/update-runner.yml", "docs/deploy.md", "docs/day2.md",
           "README.md", "infra/README.md"]
COMMANDS = (("az", "acr", "build"), ("az", "acr", "task", "create"), ("docker", "build"))
# Options that take no value; every other option takes the next token.
FLAGS = {"--no-push", "--no-logs", "--no-wait", "--no-format", "--no-cache", "--pull", "-q", "--quiet"}
THIS_REPO = re.compile(r"^https://github\.com/[^/]+/runner-dispatch(?:\.git)?(?:#(?P<ref>[^:]*)(?::(?P<dir>.*))?)?$")


def commands(text: str):
    """(line number, tokens) of each build command, continuation lines joined."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        try:
            tokens = shlex.split(line.split(" # ", 1)[0])
        except ValueError:
            continue
        for at in range(len(tokens)):
            for cmd in COMMANDS:
                if tuple(tokens[at:at + len(cmd)]) == cmd:
                    yield start + 1, cmd, tokens[at + len(cmd):]


def parse_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in (";", "&&", "|", "||") or a.startswith(("`", ")")):
            break
        if a.startswith("-"):
            if "=" in a:
                name, value = a.split("=", 1)
                options.setdefault(name, value)
            elif a in FLAGS:
                pass
            else:
                options.setdefault(a, args[i + 1] if i + 1 < len(args) else "")
                i += 1
        else:
            positional.append(a.rstrip("`"))
        i += 1
    return options, positional


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        words = words[1:]
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def check(where: str, cmd: tuple[str, ...], args: list[str]) -> list[str]:
    options, positional = parse_args(args)
    file_option = options.get("--file") or options.get("-f")
    if cmd[-1] == "create":
        context = options.get("--context") or options.get("-c")
    else:
        context = positional[-1] if positional else None
    if context is None:
        return [f"{where}: {' '.join(cmd)} without a build context"]
    remote = THIS_REPO.match(context)
    if remote:
        context_dir = ROOT / (remote.group("dir") or "")
        dockerfile = context_dir / (file_option or "Dockerfile")
    elif "://" in context:
        return []  # someone else's repository: nothing here to check
    else:
        context_dir = ROOT / context
        dockerfile = ROOT / file_option if file_option else context_dir / "Dockerfile"
    if not context_dir.is_dir():
        return [f"{where}: context {context} is not a directory of this repository"]
    if not dockerfile.is_file():
        return [f"{where}: Dockerfile {dockerfile.relative_to(ROOT)} not found (context {context}, --file {file_option})"]
    missing = [s for s in copied_sources(dockerfile) if not (context_dir / s).exists()]
    return [f"{where}: {dockerfile.relative_to(ROOT)} copies {s}, which context {context} does not hold" for s in missing]


SECRET_ARG = re.compile(r"^\s*ARG\s+(\w*(?:TOKEN|SECRET|PASSWORD)\w*)", re.I)


def secret_args_in_image(dockerfile: Path) -> list[str]:
    """Token-like build arguments declared after the last FROM (the stage that is the image)."""
    lines = dockerfile.read_text().splitlines()
    last_from = max((i for i, l in enumerate(lines) if re.match(r"^\s*FROM\s", l, re.I)), default=0)
    return [f"{dockerfile.relative_to(ROOT)}:{i + 1}: ARG {m.group(1)} in the image's own stage: "
            f"its value would be in the image history; declare it in a download stage"
            for i, l in enumerate(lines) if i > last_from and (m := SECRET_ARG.match(l))]


def main() -> int:
    problems: list[str] = []
    for dockerfile in sorted((ROOT / "runner-image").glob("Dockerfile*")):
        problems.extend(secret_args_in_image(dockerfile))
    count = 0
    for name in SOURCES:
        path = ROOT / name
        if not path.is_file():
            continue
        for line, cmd, args in commands(path.read_text()):
            count += 1
            problems.extend(check(f"{name}:{line}", cmd, args))
    for problem in problems:
        print(f"check_build_contexts.py: {problem}", file=sys.stderr)
    print(f"check_build_contexts.py: {count} documented builds, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
