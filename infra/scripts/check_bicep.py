#!/usr/bin/env python3
"""Offline sanity check of infra/*.bicep where no Bicep compiler is available.

It is not a compiler: it parses every file with pycep-parser (syntax), then checks
what a compiler would otherwise catch across files:
  - every module parameter a file passes (main.bicep, or a module that nests
    modules) exists in the module, and every module parameter without a default is
    passed;
  - every `<module>.outputs.<name>` (or `<module>[i].outputs.<name>` of a module
    loop) a file reads is an output of that module;
  - every `param` set in main.bicepparam exists in main.bicep;
  - files referenced by loadFileAsBase64/loadTextContent exist;
  - a file that declares a Flex Consumption plan sets none of the site properties and
    app settings Microsoft lists under "Flex Consumption plan deprecations" (newer
    regions reject them, e.g. ARM error 51021 for siteConfig.ftpsState).
Run `az bicep build --file infra/main.bicep` wherever the Bicep CLI exists: it
also checks resource types and property names, which this script does not.

Usage: pip install pycep-parser && python3 infra/scripts/check_bicep.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    from pycep import BicepParser
except ImportError:  # pragma: no cover
    sys.exit("check_bicep.py: pip install pycep-parser")

INFRA = Path(__file__).resolve().parent.parent


# From Microsoft's "Flex Consumption plan deprecations" (Azure Functions app settings
# reference): the runtime moved to functionAppConfig, the content share and run-from-package
# to functionAppConfig.deployment, scale to functionAppConfig.scaleAndConcurrency.
FLEX_DEPRECATED_PROPERTIES = (
    "ftpsState", "alwaysOn", "linuxFxVersion", "windowsFxVersion", "netFrameworkVersion",
    "javaVersion", "powerShellVersion", "use32BitWorkerProcess", "preWarmedInstanceCount",
    "functionAppScaleLimit", "minimumElasticInstanceCount", "containerSize",
)
FLEX_DEPRECATED_SETTINGS = (
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION", "WEBSITE_VNET_ROUTE_ALL",
    "SCALE_CONTROLLER_LOGGING_ENABLED",
)


def flex_deprecations(path: Path) -> list[str]:
    """Deprecated Flex Consumption properties and settings set in a file with a Flex plan."""
    text = path.read_text()
    if "FlexConsumption" not in text:
        return []
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    found = []
    for name in FLEX_DEPRECATED_PROPERTIES + FLEX_DEPRECATED_SETTINGS:
        for match in re.finditer(rf"^\s*'?{name}'?\s*:", code, re.M):
            line = code[: match.start()].count("\n") + 1
            found.append(f"{path.relative_to(INFRA)}:{line}: {name} is deprecated on Flex Consumption")
    return found


def symbol_of(operand):
    """`name` for `name` and for `name[i]` (a module loop), else None."""
    if isinstance(operand, str):
        return operand
    if isinstance(operand, dict):
        op = operand.get("operator")
        if isinstance(op, dict) and op.get("type") == "index_accessor":
            inner = op["operands"].get("operand_1")
            return inner if isinstance(inner, str) else None
    return None


def walk(node, found):
    """Collect `<symbol>.outputs.<name>` and `<symbol>[i].outputs.<name>` accesses."""
    if isinstance(node, dict):
        op = node.get("operator")
        if isinstance(op, dict) and op.get("type") == "property_accessor":
            ops = op["operands"]
            inner = ops.get("operand_2")
            symbol = symbol_of(ops.get("operand_1"))
            if symbol is not None and isinstance(inner, dict):
                inner_op = inner.get("operator", {})
                if inner_op.get("type") == "property_accessor":
                    iops = inner_op["operands"]
                    if iops.get("operand_1") == "outputs" and isinstance(iops.get("operand_2"), str):
                        found.add((symbol, iops["operand_2"]))
        for value in node.values():
            walk(value, found)
    elif isinstance(node, list):
        for value in node:
            walk(value, found)


def module_config(module):
    config = module["config"]
    # Conditional modules and module loops nest their body one level down.
    if "condition" in config and "config" in config:
        config = config["config"]
    return config


def check_modules(path: Path, doc: dict, parsed: dict[Path, dict], problems: list[str]) -> None:
    """Module parameters passed and module outputs read in one file, against the modules."""
    name = path.relative_to(INFRA)
    modules = doc.get("modules", {})
    for symbol, module in modules.items():
        rel = module["detail"]["path"]
        target_doc = parsed.get((path.parent / rel).resolve())
        if target_doc is None:
            problems.append(f"{name}: module {symbol}: {rel} not found or not parsed")
            continue
        declared = target_doc.get("parameters", {})
        passed = module_config(module).get("params", {}) or {}
        for param in passed:
            if param not in declared:
                problems.append(f"{name}: module {symbol} passes unknown param {param} to {rel}")
        for param, spec in declared.items():
            if spec.get("default") is None and param not in passed:
                # pycep reports `= ''` as default '' and no default as None.
                problems.append(f"{name}: module {symbol} does not pass required param {param}")
    found: set[tuple[str, str]] = set()
    walk(doc, found)
    for symbol, output in sorted(found):
        module = modules.get(symbol)
        if module is None:
            continue
        target_doc = parsed.get((path.parent / module["detail"]["path"]).resolve(), {})
        if output not in target_doc.get("outputs", {}):
            problems.append(f"{name}: {symbol}.outputs.{output} is not an output of {module['detail']['path']}")


def main() -> int:
    parser = BicepParser()
    problems: list[str] = []
    parsed: dict[Path, dict] = {}
    files = [INFRA / "main.bicep", *sorted((INFRA / "modules").glob("*.bicep"))]
    for path in files:
        text = path.read_text()
        try:
            parsed[path] = parser.parse(text=text)
        except Exception as exc:  # noqa: BLE001 - report every syntax error
            problems.append(f"{path.relative_to(INFRA)}: syntax: {str(exc).splitlines()[0]}")
            continue
        for ref in re.findall(r"load(?:FileAsBase64|TextContent|JsonContent)\('([^']+)'", text):
            if not (path.parent / ref).is_file():
                problems.append(f"{path.relative_to(INFRA)}: loads missing file {ref}")

    # Every file's modules (main.bicep's, and modules that nest modules).
    for path, doc in parsed.items():
        check_modules(path, doc, parsed, problems)

    main_path = INFRA / "main.bicep"
    main_doc = parsed.get(main_path)
    if main_doc:
        params_file = INFRA / "main.bicepparam"
        if params_file.exists():
            declared = main_doc.get("parameters", {})
            for name in re.findall(r"^param\s+(\w+)\s*=", params_file.read_text(), re.M):
                if name not in declared:
                    problems.append(f"main.bicepparam: param {name} is not declared in main.bicep")

    for path in files:
        problems.extend(flex_deprecations(path))

    for problem in problems:
        print(f"check_bicep.py: {problem}", file=sys.stderr)
    print(f"check_bicep.py: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
