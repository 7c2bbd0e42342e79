"""The folders are the design: imports only go down (docs/design.md, "Layers").

    invoke_provider -> verbs/ -> core (reconcile, context) -> cloud/ -> core's pure parts
    admin/          -> core, cloud/ and the entrypoint; never a verb's internals

Read from the source with ast, so a lazy import inside a function counts as much as one at
the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hostfactory_aws"
# Core modules that reach AWS through cloud/; the rest of the core is pure. context only
# carries the lazily made session, so cloud/ may take a Context; it never calls back up.
CORE_USING_CLOUD = {"context", "reconcile", "orphans"}
CLOUD_MAY_USE = {"context"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every hostfactory_aws module this file imports (``from pkg import mod`` counts mod)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hostfactory_aws"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if not mod.startswith("hostfactory_aws"):
                continue
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names
                         if (PACKAGE.parent / f"{mod}.{a.name}".replace(".", "/")).exists()
                         or (PACKAGE.parent / (f"{mod}.{a.name}".replace(".", "/") + ".py"))
                         .exists())
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in ("verbs", "admin", "cloud"):
        return parts[1]
    if parts[1] in ("invoke_provider", "__main__"):
        return "entry"
    return "core"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
EDGES = sorted((m, t) for m, p in MODULES.items() for t in imports_of(p) if t != m)


def broken_rule(src: str, dst: str) -> str | None:
    """Why importing dst from src breaks the layering, or None."""
    s, d = layer(src), layer(dst)
    short = src.split(".")[-1]
    if d == "verbs" and s not in ("verbs", "entry"):
        return "only the entrypoint dispatches to verbs"
    if d == "admin" and s not in ("admin", "entry"):
        return "nothing but the admin command and `python -m` uses admin/"
    if d == "entry" and s not in ("admin", "entry"):
        return "the entrypoint is the top: only admin/ may call it"
    if s == "cloud" and d == "core" and dst.split(".")[-1] in CORE_USING_CLOUD - CLOUD_MAY_USE:
        return "cloud/ uses only the pure core, never what calls cloud/"
    if s == "core" and d == "cloud" and short not in CORE_USING_CLOUD:
        return f"pure core modules stay free of AWS (allowed: {sorted(CORE_USING_CLOUD)})"
    if s == "verbs" and d == "verbs":
        return "verbs do not call one another; shared work belongs in the core"
    return None


def test_the_scan_sees_the_real_edges() -> None:
    """A scanner that finds nothing would pass everything: check a few known edges."""
    edges = set(EDGES)
    assert ("hostfactory_aws.verbs.get_request_status", "hostfactory_aws.state") in edges
    assert ("hostfactory_aws.admin.cli", "hostfactory_aws.context") in edges
    assert any(s.startswith("hostfactory_aws.cloud.apis.") and d == "hostfactory_aws.errors"
               for s, d in edges)


@pytest.mark.parametrize(("src", "dst"), [
    ("hostfactory_aws.state", "hostfactory_aws.cloud.session"),
    ("hostfactory_aws.cloud.instances", "hostfactory_aws.reconcile"),
    ("hostfactory_aws.reconcile", "hostfactory_aws.verbs.get_request_status"),
    ("hostfactory_aws.verbs.request_machines", "hostfactory_aws.admin.doctor"),
    ("hostfactory_aws.templates", "hostfactory_aws.invoke_provider"),
])
def test_the_rules_refuse_upward_imports(src: str, dst: str) -> None:
    assert broken_rule(src, dst)


def test_imports_only_go_down() -> None:
    bad = [f"{s} -> {d}: {why}" for s, d in EDGES if (why := broken_rule(s, d))]
    assert not bad, "\n".join(bad)
