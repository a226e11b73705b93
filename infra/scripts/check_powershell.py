#!/usr/bin/env python3
"""Syntax check of the PowerShell this repository ships, with a real PowerShell grammar.

No PowerShell can be installed where CI runs, so this parses with tree-sitter's
PowerShell grammar (PyPI: tree-sitter, tree-sitter-powershell) instead:

- every *.ps1 file given on the command line (default: runner-image/entrypoint.ps1);
- the RUN instructions of runner-image/Dockerfile.windows, whose SHELL is powershell
  and whose escape character is the backtick: each RUN, with its continuation lines
  joined as Docker joins them, is parsed as one PowerShell command line.

A file fails when the parse tree has an ERROR or a MISSING node; the line and the
offending text are printed. Before checking anything, the script makes sure that the
grammar rejects a broken snippet, so a parser that accepts everything cannot pass.

Usage: python3 infra/scripts/check_powershell.py [file.ps1 | Dockerfile... ...]   (exit 1 on a problem)
"""

import re
import sys
from pathlib import Path

try:
    import tree_sitter_powershell
    from tree_sitter import Language, Parser
except ImportError:
    sys.exit("check_powershell.py: pip install tree-sitter tree-sitter-powershell (see .ci/run)")

ROOT = Path(__file__).resolve().parents[2]
PARSER = Parser(Language(tree_sitter_powershell.language()))


def problems(source: bytes):
    """(line, text) of every ERROR or MISSING node in the parse of `source`."""
    found = []
    stack = [PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            text = source[node.start_byte : node.end_byte].decode("utf-8", "replace").strip()
            found.append((node.start_point[0] + 1, text.splitlines()[0][:80] if text else node.type))
        stack.extend(node.children)
    return sorted(found)


def dockerfile_runs(path: Path):
    """(first line, command) of each RUN of a Dockerfile with a powershell SHELL."""
    lines = path.read_text(encoding="utf-8").splitlines()
    escape = "\\"
    if lines and re.match(r"#\s*escape\s*=\s*`\s*$", lines[0]):
        escape = "`"
    runs, shell, i = [], None, 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.endswith(escape) and i + 1 < len(lines):
            i += 1
            text = text[: -len(escape)] + " " + lines[i]
        i += 1
        word = text.split(None, 1)
        if not word or word[0].startswith("#"):
            continue
        if word[0].upper() == "SHELL":
            shell = text
        elif word[0].upper() == "RUN" and shell and "powershell" in shell.lower():
            runs.append((start + 1, word[1] if len(word) > 1 else ""))
    return runs


def main(argv):
    if not problems(b"if ($a -eq { \n $b = (1 +\n"):
        sys.exit("check_powershell.py: the grammar accepted a broken snippet; not checking with it")
    files = [Path(a) for a in argv] or [ROOT / "runner-image" / "entrypoint.ps1", ROOT / "runner-image" / "Dockerfile.windows"]
    status, checked = 0, 0
    for path in files:
        if path.name.startswith("Dockerfile"):
            runs = dockerfile_runs(path)
            if not runs:
                print(f"{path}: no RUN under a powershell SHELL found (has the file changed shape?)")
                status = 1
            for first, command in runs:
                for _, text in problems(command.encode("utf-8")):
                    print(f"{path}:{first}: PowerShell syntax error in RUN near: {text}")
                    status = 1
                checked += 1
            continue
        for line, text in problems(path.read_bytes()):
            print(f"{path}:{line}: PowerShell syntax error near: {text}")
            status = 1
        checked += 1
    if status == 0:
        print(f"check_powershell.py: {checked} PowerShell scripts/commands parse")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
