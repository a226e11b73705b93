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
  - no file that builds the Function App's site properties or app settings (functionapp.bicep,
    and main.bicep, which passes it the app settings) sets any of Microsoft's "Flex
    Consumption plan deprecations" or the two project rules below, in any spelling;
  - no maximum instance count parameter has a @minValue above Flex Consumption's floor;
  - every subnet created for Azure Container Instances has a NAT gateway (or a route table
    to a firewall): container groups in a subnet have no other way out to GitHub;
  - aci-placement.bicep refuses (fail()) a subnetId in another subscription and grants
    subnet-join only in its own one (ACI needs subnet and container groups in one subscription);
  - every queue, blob container and lifecycle rule of storage.bicep is named in main.bicep's
    header and in infra/README.md.
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


# Microsoft's "Flex Consumption plan deprecations" table (Azure Functions app settings
# reference): site properties and app settings a Flex Consumption app must not set (the
# runtime moved to functionAppConfig.runtime, the content share and run-from-package to
# functionAppConfig.deployment, scale to functionAppConfig.scaleAndConcurrency), plus
# WEBSITE_TIME_ZONE and TZ, which the Flex Consumption plan page lists as unsupported.
# Matched case-insensitively: Microsoft's own pages spell some of them LinuxFxVersion, IsXenon.
FLEX_DEPRECATED_PROPERTIES = (
    "alwaysOn", "containerSize", "dnsConfiguration", "ftpsState", "functionAppScaleLimit",
    "isReserved", "IsXenon", "javaVersion", "linuxFxVersion", "netFrameworkVersion",
    "powerShellVersion", "preWarmedInstanceCount", "use32BitWorkerProcess",
    "vnetBackupRestoreEnabled", "vnetContentShareEnabled", "vnetImagePullEnabled",
    "vnetRouteAllEnabled", "windowsFxVersion",
)
FLEX_DEPRECATED_SETTINGS = (
    "ENABLE_ORYX_BUILD", "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED", "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION", "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTOVERVNET", "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT", "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION", "WEBSITE_VNET_ROUTE_ALL",
    "WEBSITE_TIME_ZONE", "TZ",
)
# Not on Microsoft's list: this project's own rules. minimumElasticInstanceCount is an
# Elastic Premium setting (Flex scales with functionAppConfig.scaleAndConcurrency), and
# SCALE_CONTROLLER_LOGGING_ENABLED belongs to the scale controller of the other plans.
PROJECT_FLEX_RULES = ("minimumElasticInstanceCount", "SCALE_CONTROLLER_LOGGING_ENABLED")

# Flex Consumption's lowest accepted maximum instance count. Microsoft's Flex Consumption
# plan page gave 40 until 2025 and gives 1 now; a higher @minValue refuses counts Azure takes.
FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT = 1


def code_of(text: str) -> str:
    """The text without `//` comments (a `//` inside a string ends the line early: harmless here)."""
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def site_files(paths: list[Path], parsed: dict[Path, dict]) -> list[Path]:
    """Files that build a Function App's site properties or app settings: those that declare
    a Microsoft.Web/sites resource (or its config), and every file that passes parameters to
    one of them through a module (main.bicep builds the app settings functionapp.bicep sets)."""
    found = {p for p in paths if re.search(r"'Microsoft\.Web/sites(/config)?@", p.read_text(), re.I)}
    grew = True
    while grew:
        grew = False
        for path, doc in parsed.items():
            if path in found:
                continue
            targets = {(path.parent / m["detail"]["path"]).resolve() for m in doc.get("modules", {}).values()}
            if targets & found:
                found.add(path)
                grew = True
    return [p for p in paths if p in found]


def flex_deprecations(path: Path) -> list[str]:
    """Deprecated Flex Consumption properties and settings a file sets, as an object key
    (`name: value`) or as a `{ name: 'X', value: ... }` app-setting item; any spelling."""
    code = code_of(path.read_text())
    found = []
    rules = [(n, "is deprecated on Flex Consumption (Microsoft's list)")
             for n in FLEX_DEPRECATED_PROPERTIES + FLEX_DEPRECATED_SETTINGS]
    rules += [(n, "is refused on Flex Consumption (a project rule)") for n in PROJECT_FLEX_RULES]
    for name, why in rules:
        pattern = rf"^\s*'?{name}'?\s*:|\bname\s*:\s*'{name}'"
        for match in re.finditer(pattern, code, re.M | re.I):
            line = code[: match.start()].count("\n") + 1
            found.append(f"{path.relative_to(INFRA)}:{line}: {name} {why}")
    return found


def maximum_instance_floor(path: Path) -> list[str]:
    """A maximum instance count parameter whose @minValue is above Flex Consumption's floor."""
    found = []
    code = code_of(path.read_text())
    for match in re.finditer(r"((?:^\s*@.*\n|^\s*\n)*)^\s*param\s+(\w*maximumInstanceCount)\b", code, re.M | re.I):
        low = re.search(r"@minValue\((\d+)\)", match.group(1))
        if low and int(low.group(1)) > FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT:
            line = code[: match.start(2)].count("\n") + 1
            found.append(f"{path.relative_to(INFRA)}:{line}: {match.group(2)} has @minValue({low.group(1)}), "
                         f"but Flex Consumption accepts a maximum of {FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT} or more")
    return found


ACI_DELEGATION = "Microsoft.ContainerInstance/containerGroups"


def contains(node, pred) -> bool:
    """Whether `pred` holds for any node of a pycep tree."""
    if pred(node):
        return True
    if isinstance(node, dict):
        return any(contains(v, pred) for v in node.values())
    if isinstance(node, list):
        return any(contains(v, pred) for v in node)
    return False


def aci_subnet_egress(path: Path, doc: dict, parsed: dict[Path, dict]) -> list[str]:
    """Every subnet a file creates for ACI has a way out to the internet: container groups in
    a subnet get no public IP, so runners reach GitHub through the subnet's NAT gateway (or a
    route table to a firewall). A subnet passes when its properties set natGateway or
    routeTable, or merge a module output of a file that creates a NAT gateway."""
    modules = doc.get("modules", {})

    def creates_nat(symbol: str) -> bool:
        module = modules.get(symbol)
        if module is None:
            return False
        target = (path.parent / module["detail"]["path"]).resolve()
        text = target.read_text() if target.is_file() else ""
        return "'Microsoft.Network/natGateways@" in text

    def has_way_out(props) -> bool:
        found: set[tuple[str, str]] = set()
        walk(props, found)
        return (contains(props, lambda n: isinstance(n, dict) and ({"natGateway", "routeTable"} & n.keys()))
                or any(creates_nat(symbol) for symbol, _ in found))

    problems = []
    for name, resource in doc.get("resources", {}).items():
        if resource.get("type", "").lower() != "microsoft.network/virtualnetworks" or resource.get("existing"):
            continue
        config = module_config(resource)
        for subnet in (config.get("properties") or {}).get("subnets") or []:
            props = subnet.get("properties") if isinstance(subnet, dict) else None
            if props is None or not contains(props, lambda n: n == ACI_DELEGATION):
                continue
            if not has_way_out(props):
                problems.append(f"{path.relative_to(INFRA)}: resource {name}: subnet {subnet.get('name')} is delegated "
                                f"to {ACI_DELEGATION} without a NAT gateway or route table (container groups in a "
                                f"subnet have no other way out)")
    return problems


def placement_subnet_guard(path: Path, doc: dict) -> list[str]:
    """A file that takes an existing `subnetId` for container groups deployed at subscription
    scope (aci-placement.bicep) refuses one in another subscription (ACI needs the subnet and
    the container groups in one subscription), and never grants subnet-join in another one."""
    if doc.get("globals", {}).get("scope", {}).get("value") != "subscription" or "subnetId" not in doc.get("parameters", {}):
        return []
    problems = []
    name = path.relative_to(INFRA)
    code = code_of(path.read_text())
    statements = re.split(r"\n(?=\S)", code)
    if not any("fail(" in st and "subscription().subscriptionId" in st and "subnetParts" in st for st in statements):
        problems.append(f"{name}: takes subnetId but never refuses (fail()) a subnet outside subscription().subscriptionId")
    for symbol, module in doc.get("modules", {}).items():
        if not module["detail"]["path"].endswith("subnet-join.bicep"):
            continue
        block = next((st for st in statements if re.match(rf"module\s+{symbol}\b", st)), "")
        scope = re.search(r"^\s*scope:\s*resourceGroup\((.*)\)\s*$", block, re.M)
        if scope is None or "," in scope.group(1):
            problems.append(f"{name}: module {symbol} must be scoped resourceGroup(<name>) in this subscription: "
                            f"a subnet in another subscription can never hold this placement's container groups")
    return problems


def storage_documented(storage_doc: dict, storage_text: str) -> list[str]:
    """Every queue, blob container and lifecycle rule storage.bicep creates is named in
    main.bicep's header and in infra/README.md (they once omitted runner-cleanup-failed,
    the demand-log container and its rule)."""
    names = list(storage_doc.get("parameters", {}).get("queueNames", {}).get("default") or [])
    for block in re.findall(r"'Microsoft\.Storage/storageAccounts/blobServices/containers@[^']*'\s*=\s*\{(.*?)\n\}", storage_text, re.S):
        literal = re.search(r"^\s*name:\s*'([^']+)'", block, re.M)
        if literal:
            names.append(literal.group(1))
    names += re.findall(r"^\s*name:\s*'([^']+)'\s*\n\s*enabled:", storage_text, re.M)  # lifecycle rules
    main_text = (INFRA / "main.bicep").read_text()
    header = "\n".join(line for line in main_text.splitlines()[:40] if line.startswith("//"))
    readme = (INFRA / "README.md").read_text()
    problems = []
    for name in names:
        for where, text in (("main.bicep's header", header), ("infra/README.md", readme)):
            if name not in text:
                problems.append(f"modules/storage.bicep creates {name}, which {where} does not name")
    return problems


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

    storage_path = INFRA / "modules" / "storage.bicep"
    if storage_path in parsed:
        problems.extend(storage_documented(parsed[storage_path], storage_path.read_text()))
    for path, doc in parsed.items():
        problems.extend(aci_subnet_egress(path, doc, parsed))
        problems.extend(placement_subnet_guard(path, doc))

    if any("FlexConsumption" in p.read_text() for p in files):
        for path in site_files(files, parsed):
            problems.extend(flex_deprecations(path))
        for path in files:
            problems.extend(maximum_instance_floor(path))

    for problem in problems:
        print(f"check_bicep.py: {problem}", file=sys.stderr)
    print(f"check_bicep.py: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
