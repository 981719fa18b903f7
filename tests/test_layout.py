"""The source tree reads as the design reads (docs/architecture.md, "Layout"): each endpoint
family uses only the server, the shared guards and the domain, never another family; nothing
but the operator commands and the composition root reaches into a family or the commands. Swift has one module
here, so this test is the boundary: it finds every type a file names and where it is declared.

Run: .venv/bin/python -m pytest -q tests/test_layout.py
"""

import re
from collections import defaultdict
from pathlib import Path

from harness.paths import REPO

CORE = REPO / "Sources" / "PaymentsCore"
DECLARATION = re.compile(r"^(?:public |package |internal |fileprivate |private |final )*"
                         r"(?:struct|enum|class|protocol|typealias|actor)\s+([A-Z]\w*)", re.M)
# The composition root: it registers every family's routes.
COMPOSITION_ROOT = CORE / "Server" / "Application.swift"


def area(path: Path) -> str:
    """`Families/Intents`, `Domain`, `Guards`, `Server` or `Operations`."""
    parts = path.relative_to(CORE).parts
    return "/".join(parts[:2]) if parts[0] == "Families" else parts[0]


def code_of(path: Path) -> str:
    """The file without comments and string literals, so that only code names count."""
    text = path.read_text()
    text = re.sub(r'"""[\s\S]*?"""', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def declarations():
    where = {}
    for path in CORE.rglob("*.swift"):
        for name in DECLARATION.findall(code_of(path)):
            where[name] = area(path)
    return where


def allowed(user: str, owner: str) -> bool:
    """Families use the shared parts (Server, Guards, Domain) and themselves; the shared parts use
    each other; only the operator commands (and the composition root) reach into a family."""
    if user == owner or user == "Operations":
        return True
    return owner in ("Server", "Guards", "Domain")


def test_every_file_lives_in_a_known_area():
    areas = {area(path) for path in CORE.rglob("*.swift")}
    assert areas <= {"Server", "Guards", "Domain", "Operations"} | {a for a in areas if a.startswith("Families/")}
    assert {a for a in areas if a.startswith("Families/")} >= {
        "Families/Intents", "Families/Capture", "Families/Milestones", "Families/Disputes", "Families/Webhooks",
        "Families/Connect", "Families/Admin"}


def test_families_and_shared_parts_import_only_what_the_layout_allows():
    where = declarations()
    assert len(where) > 50, where
    violations = defaultdict(set)
    for path in CORE.rglob("*.swift"):
        if path == COMPOSITION_ROOT:
            continue
        user = area(path)
        for name in set(re.findall(r"\b([A-Z]\w*)\b", code_of(path))):
            owner = where.get(name)
            if owner and not allowed(user, owner):
                violations[str(path.relative_to(REPO))].add(f"{name} ({owner})")
    assert not violations, dict(violations)


SOURCES = REPO / "Sources"
CLI = SOURCES / "PaymentsCLI"
IMPORT = re.compile(r"^\s*(?:@\w+\s+)?(?:public |internal |private )?import\s+(\w+)", re.M)


def imports(path: Path) -> set:
    return set(IMPORT.findall(path.read_text()))


def test_only_the_command_line_target_uses_argument_parser():
    """The parser stays in the command layer (docs/architecture.md, "Modules"): PaymentsCLI holds
    one ParsableCommand per subcommand over PaymentsCore's operations, which never see it."""
    users = {path.relative_to(REPO) for path in SOURCES.rglob("*.swift") if "ArgumentParser" in imports(path)}
    assert users and all(path.parts[1] == "PaymentsCLI" for path in users), users
    for path in CLI.rglob("*.swift"):
        assert imports(path) <= {"ArgumentParser", "Foundation", "PaymentsCore"}, (path, imports(path))
    assert imports(SOURCES / "payments" / "main.swift") == {"PaymentsCLI"}
    package = (REPO / "Package.swift").read_text()
    core = re.search(r'\.target\(\s*name: "PaymentsCore",\s*dependencies: \[([^\]]*)\]', package)
    assert core and "ArgumentParser" not in core.group(1), "PaymentsCore must not depend on the parser"


def test_the_cli_has_one_file_per_command():
    names = {path.stem for path in CLI.glob("*.swift")}
    assert {"PaymentsCommand", "Serve", "Migrate", "Token", "SeedDemo", "Sweep", "Events", "StripeGroup",
            "Doctor"} <= names, names
    assert not list(CLI.rglob("*/*.swift")), "PaymentsCLI is one flat folder"
