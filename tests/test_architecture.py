"""The package's layers and "nevers", checked on its source (see docs/architecture.md).

1. Layers, top to bottom: a module imports only from its own package (its unit) or from
   layers below it; two units of one layer do not import each other, except at the
   bottom. The one import upward is declared in :data:`DELEGATIONS`.
2. No import cycles between modules, counting imports inside functions too.
3. ``testing/`` imports nothing from the rest of the package, and only the CLI imports it,
   so a bug in the client cannot be mirrored (and hidden) by the server it is tested
   against.
4. Only the transport, and the modules that build it or read its exceptions, import
   ``aiohttp``: the protocol, models, errors and jobs do not.
5. Every module stays under :data:`MAX_LINES` lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from .architecture_imports import (
    PACKAGE,
    ROOT,
    Import,
    imports_of,
    parse_package,
    resolve,
    within,
)

BOTTOM = (
    "_errors",
    "_context",
    "_exchange",
    "_models",
    "_converter",
    "_money",
    "_config",
    "_redact",
    "_logging",
    "_version",
)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the CLI", ("cli",)),
    ("the cluster", ("cluster",)),
    ("the blocking client", ("sync",)),
    ("the public surface", ("",)),  # inveterate_async/__init__.py
    ("the jobs", ("_export", "_bulk")),
    ("the client facade", ("_client",)),
    ("streaming and pagination", ("_streaming", "_pagination")),
    ("HTTP", ("_http",)),
    ("the bottom", BOTTOM),
)
SANDBOX = "testing"
# client.apply_credits (in _client_writes) delegates to the bulk layer's entry point and
# names its types, imported from the _bulk package itself; _bulk reaches the API through
# its own protocol (_bulk.api.CreditsAPI) and never imports the facade: no cycle.
DELEGATIONS = ((f"{PACKAGE}._client_writes", f"{PACKAGE}._bulk"),)
# Units kept in more than one module (the facade's writes beside it, for size).
SAME_UNIT = {"_client_writes": "_client"}
# Who may import aiohttp: the transport, the settings and the facade that build it, the
# fail-fast rule that reads its connection errors, and the applications around the library.
AIOHTTP_USERS = ("_http.transport", "_http.caller", "_config", "_client", "_streaming.failfast")
AIOHTTP_UNITS = ("cli", "cluster", "sync", SANDBOX)
MAX_LINES = 320


def owner(target: str, modules: Iterable[str]) -> str | None:
    """The package module an import target names (the longest module prefix), or None
    for anything outside the package."""
    best = None
    for name in modules:
        if within(target, name) and (best is None or len(name) > len(best)):
            best = name
    return best


def unit_of(module: str) -> str:
    """``inveterate_async._bulk.run`` -> ``_bulk``; the package itself -> ``""``."""
    rest = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    first = rest.split(".")[0]
    return SAME_UNIT.get(first, first)


def layer_of(unit: str) -> int | None:
    for number, (_, units) in enumerate(LAYERS):
        if unit in units:
            return number
    return None


def layer_problem(imp: Import, target: str) -> str | None:
    """Why an import of package module ``target`` breaks the layers, or None."""
    src, dst = unit_of(imp.module), unit_of(target)
    if src == SANDBOX or dst == SANDBOX:
        if src == dst or (dst == SANDBOX and src == "cli"):
            return None
        return "the sandbox is imported only by the CLI, and imports none of the package"
    if src == dst or any(imp.module == a and target == b for a, b in DELEGATIONS):
        return None
    above, below = layer_of(src), layer_of(dst)
    if above is None or below is None:
        return f"{unit_of(imp.module if above is None else target)!r} is in no layer"
    if below < above:
        return f"{LAYERS[above][0]} imports {LAYERS[below][0]}, a layer above it"
    if below == above and LAYERS[above][1] is not BOTTOM:
        return f"{src} and {dst} are peers in {LAYERS[above][0]}"
    return None


def layer_violations(modules: dict[str, list[Import]]) -> list[str]:
    found = []
    for imports in modules.values():
        for imp in imports:
            target = owner(imp.target, modules)
            problem = None if target is None else layer_problem(imp, target)
            if problem is not None:
                found.append(f"{imp}: {problem}")
    return found


def cycles(modules: dict[str, list[Import]]) -> list[list[str]]:
    """The import cycles between modules (strongly connected components, Tarjan)."""
    edges = {
        name: sorted({t for imp in found if (t := owner(imp.target, modules)) not in (None, name)})
        for name, found in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def aiohttp_violations(modules: dict[str, list[Import]]) -> list[str]:
    allowed = {f"{PACKAGE}.{name}" for name in AIOHTTP_USERS}
    return [
        str(imp)
        for name, found in modules.items()
        if name not in allowed and unit_of(name) not in AIOHTTP_UNITS
        for imp in found
        if within(imp.target, "aiohttp")
    ]


@pytest.fixture(scope="module")
def package() -> dict[str, list[Import]]:
    return parse_package()


def _failure(rule: str, found: list[str]) -> str:
    return f"{rule}:\n  " + "\n  ".join(found)


# --- the package obeys them -----------------------------------------------------------


def test_every_module_is_in_a_layer_and_imports_only_below(
    package: dict[str, list[Import]],
) -> None:
    for name in package:
        unit = unit_of(name)
        assert unit == SANDBOX or layer_of(unit) is not None, f"{name} is in no layer"
    found = layer_violations(package)
    assert not found, _failure("imports that break the layers", found)


def test_the_package_has_no_import_cycles(package: dict[str, list[Import]]) -> None:
    found = cycles(package)
    assert not found, _failure("import cycles", [" -> ".join(c) for c in found])


def test_only_the_transport_and_its_builders_import_aiohttp(
    package: dict[str, list[Import]],
) -> None:
    for name in AIOHTTP_USERS:
        assert f"{PACKAGE}.{name}" in package, f"{name} is gone: update AIOHTTP_USERS"
    assert any(imp.target == "aiohttp" for imp in package[f"{PACKAGE}._http.transport"])
    found = aiohttp_violations(package)
    assert not found, _failure("aiohttp outside the transport", found)


def oversized(root: Path) -> list[str]:
    """The modules under ``root`` longer than :data:`MAX_LINES`, with their sizes."""
    sizes = {
        str(path.relative_to(root.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(root.rglob("*.py"))
    }
    return [f"{name}: {lines} lines" for name, lines in sizes.items() if lines > MAX_LINES]


def test_every_module_is_under_the_size_limit() -> None:
    over = oversized(ROOT)
    assert not over, _failure(f"modules over {MAX_LINES} lines", over)


# --- the checker catches what it should (so the tests above can fail) -------------------


def modules_of(sources: dict[str, str]) -> dict[str, list[Import]]:
    """A made-up package: module name (``pkg`` for the package itself) -> source."""
    found = {}
    for short, source in sources.items():
        name = PACKAGE if short == "" else f"{PACKAGE}.{short}"
        is_package = short in ("", "cli", "testing", "_bulk", "_http", "_export")
        found[name] = list(imports_of(source, name, is_package))
    return found


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        ("_errors", "from ._client import InveterateClient", "a layer above"),
        ("_http.request", "def f():\n    from .._pagination import x", "a layer above"),
        ("_bulk.run", "from .._client import InveterateClient", None),  # a cycle: below
        ("_bulk.run", "from .._export import export_credits", "peers"),
        ("_client", "from .cli import main", "a layer above"),
        ("_client_writes", "from ._bulk.run import apply_credits", "a layer above"),
        ("_client", "from ._bulk import apply_credits", "a layer above"),
        ("_models", "import inveterate_async", "a layer above"),
        ("_export.job", "from ..testing import Sandbox", "sandbox"),
        ("testing._server", "from .._money import DECIMAL_TEXT", "sandbox"),
        ("_pagination", "from ._errors import E", None),
        ("_new", "from ._errors import E", "in no layer"),
    ],
)
def test_checker_reports_imports_that_break_the_layers(
    module: str, source: str, problem: str | None
) -> None:
    modules = modules_of(
        {
            "": "",
            "cli": "",
            "testing": "",
            "testing._server": "",
            "_client": "",
            "_client_writes": "",
            "_errors": "",
            "_money": "",
            "_pagination": "",
            "_bulk": "",
            "_bulk.run": "",
            "_export": "",
            "_export.job": "",
            "_http": "",
            "_http.request": "",
            "_models": "",
            "_new": "",
            module: source,
        }
    )
    found = layer_violations(modules)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1, found
        assert found[0].startswith(f"{PACKAGE}.{module}:")
        assert problem in found[0]


def test_checker_allows_imports_down_within_a_unit_at_the_bottom_and_the_delegation() -> None:
    modules = modules_of(
        {
            "": "from ._client import InveterateClient\nfrom ._bulk import Journal",
            "cli": "from .. import InveterateClient\nfrom ..testing import Sandbox",
            "testing": "from ._server import Sandbox",
            "testing._server": "import aiohttp",
            "_client": "from ._client_writes import W\nfrom ._http.request import r",
            "_client_writes": "from ._bulk import apply_credits",
            "_bulk": "from .run import apply_credits",
            "_bulk.run": "from .. import _errors\nfrom .._http.request import r",
            "_http": "",
            "_http.request": "from .._errors import E\nfrom .._money import M",
            "_errors": "from ._exchange import Response\nfrom ._redact import Redactor",
            "_exchange": "",
            "_redact": "",
            "_money": "",
        }
    )
    assert layer_violations(modules) == []
    assert cycles(modules) == []


def test_checker_reports_the_bulk_layer_importing_the_facade_that_delegates_to_it() -> None:
    modules = modules_of(
        {
            "_client": "from ._client_writes import W",
            "_client_writes": "from ._bulk import apply_credits",
            "_bulk": "from .run import apply_credits",
            "_bulk.run": "def f():\n    from .._client import InveterateClient",
        }
    )
    assert layer_violations(modules) == []  # the jobs are above the facade...
    assert cycles(modules) == [  # ...but the facade delegates to them
        [
            f"{PACKAGE}._bulk",
            f"{PACKAGE}._bulk.run",
            f"{PACKAGE}._client",
            f"{PACKAGE}._client_writes",
        ]
    ]


def test_checker_reports_a_cycle_through_a_function_level_import() -> None:
    modules = modules_of(
        {
            "_errors": "from ._models import Credit",
            "_models": "def f():\n    from ._converter import c",
            "_converter": "from ._errors import E",
            "_money": "from ._errors import E",
        }
    )
    assert cycles(modules) == [
        [f"{PACKAGE}._converter", f"{PACKAGE}._errors", f"{PACKAGE}._models"]
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import aiohttp",
        "from aiohttp import ClientSession",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aiohttp",
        "def f():\n    from aiohttp import web",
        "import importlib\nimportlib.import_module('aiohttp')",
        "__import__('aiohttp.web')",
    ],
)
def test_checker_reports_aiohttp_outside_the_transport(source: str) -> None:
    for module in ("_http.response", "_bulk.run", "_errors", "_export.job"):
        found = aiohttp_violations(modules_of({module: source}))
        assert len(found) == 1, (module, found)
    for module in ("_http.transport", "_client", "cli._core", "testing._server"):
        assert aiohttp_violations(modules_of({module: source})) == []


def test_checker_reports_a_module_over_the_limit_on_disk(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "_sub").mkdir(parents=True)
    (root / "_small.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    (root / "_sub" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    assert oversized(root) == [f"{PACKAGE}/_sub/big.py: {MAX_LINES + 1} lines"]


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("a.b.c", False, 1, None, "a.b"),
        ("a.b.c", False, 1, "d", "a.b.d"),
        ("a.b.c", False, 2, "d", "a.d"),
        ("a.b.c", False, 3, None, ""),
        ("a.b", True, 1, "c", "a.b.c"),
        ("a.b", True, 2, None, "a"),
        ("x", False, 0, "os.path", "os.path"),
    ],
)
def test_relative_imports_resolve_by_level(
    module: str, is_package: bool, level: int, name: str | None, expected: str
) -> None:
    if expected:
        assert resolve(module, is_package, level, name) == expected
    else:
        with pytest.raises(ValueError, match="beyond the top-level package"):
            resolve(module, is_package, level, name)


def test_a_package_on_disk_is_read_with_its_module_names(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "testing").mkdir(parents=True)
    (root / "__init__.py").write_text("from ._client import C\n")
    (root / "_client.py").write_text("def f():\n    from .cli import main\n")
    (root / "testing" / "__init__.py").write_text("from . import _wire\n")
    modules = parse_package(root)
    assert sorted(modules) == [PACKAGE, f"{PACKAGE}._client", f"{PACKAGE}.testing"]
    assert [str(imp) for imp in modules[f"{PACKAGE}._client"]] == [
        f"{PACKAGE}._client:2 imports {PACKAGE}.cli.main"
    ]
    assert [imp.target for imp in modules[f"{PACKAGE}.testing"]] == [f"{PACKAGE}.testing._wire"]
