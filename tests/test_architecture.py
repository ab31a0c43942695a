"""The package's import "nevers", checked on the source with ``ast``.

1. The protocol, models and errors modules import no ``aiohttp``: only the transport
   (and the client that builds it) knows the HTTP library.
2. Nothing outside ``inveterate_async/cli/`` imports from the CLI.
3. ``inveterate_async/testing/`` imports nothing from the rest of the package, so a bug
   in the client cannot be mirrored (and hidden) by the server it is tested against.

Every import statement counts, wherever it is (inside functions, ``TYPE_CHECKING``
blocks, ``try``), and so does ``importlib.import_module``/``__import__`` with a literal
name. Relative imports are resolved to absolute names before the rules are applied.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

PACKAGE = "inveterate_async"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# The modules that must not know about aiohttp.
PROTOCOL_MODULES = (
    "_http",
    "_request",
    "_response",
    "_models",
    "_errors",
    "_converter",
    "_json",
    "_money",
    "_redact",
    "_retry",
    "_context",
    "_pagination",
)


@attrs.frozen
class Import:
    """One imported module, by its absolute name, and where the import is."""

    module: str  # the importing module
    target: str  # the absolute name of what it imports
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``inveterate_async/testing/_wire.py`` -> ``inveterate_async.testing._wire``."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``.

    Level 1 is the package the module is in (for a package's ``__init__``, the package
    itself); each further dot goes one package up.
    """
    if level == 0:
        if name is None:
            raise ValueError("an absolute import needs a module name")
        return name
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"relative import beyond the top-level package in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every module ``source`` imports, as absolute names.

    ``from X import a`` counts as importing ``X.a`` (``a`` may be a submodule, and an
    attribute of a forbidden module is forbidden too); ``from X import *`` as ``X``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                target = base if alias.name == "*" else f"{base}.{alias.name}"
                yield Import(module, target, node.lineno)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            name = node.args[0] if node.args else None
            # A relative name (".x") needs its package argument: not worth guessing.
            if (
                isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and name.value[:1] != "."
            ):
                yield Import(module, name.value, node.lineno)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def within(name: str, prefix: str) -> bool:
    """Whether ``name`` is module ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


# --- the rules ---------------------------------------------------------------------


def imports_aiohttp(imp: Import) -> bool:
    return within(imp.target, "aiohttp")


def imports_cli(imp: Import) -> bool:
    return within(imp.target, f"{PACKAGE}.cli")


def imports_package_outside_testing(imp: Import) -> bool:
    return within(imp.target, PACKAGE) and not within(imp.target, f"{PACKAGE}.testing")


Rule = Callable[[Import], bool]


def violations(
    modules: dict[str, list[Import]], applies: Callable[[str], bool], rule: Rule
) -> list[str]:
    return [
        str(imp) for name, found in modules.items() if applies(name) for imp in found if rule(imp)
    ]


def imports_above_the_bulk_layer(imp: Import) -> bool:
    """The bulk layer talks to the API through its own protocol: never the client facade,
    the HTTP library, or the layers above it."""
    above = ("_client", "cli", "cluster", "_fanout", "_transport")
    return within(imp.target, "aiohttp") or any(
        within(imp.target, f"{PACKAGE}.{name}") for name in above
    )


def is_in_bulk(name: str) -> bool:
    return within(name, f"{PACKAGE}._bulk")


def is_protocol_module(name: str) -> bool:
    return name in {f"{PACKAGE}.{short}" for short in PROTOCOL_MODULES}


def is_outside_cli(name: str) -> bool:
    return not within(name, f"{PACKAGE}.cli")


def is_in_testing(name: str) -> bool:
    return within(name, f"{PACKAGE}.testing")


def parse_package(root: Path = ROOT) -> dict[str, list[Import]]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        source = path.read_text(encoding="utf-8")
        modules[name] = list(imports_of(source, name, is_package=path.name == "__init__.py"))
    return modules


@pytest.fixture(scope="module")
def package() -> dict[str, list[Import]]:
    return parse_package()


def _failure(rule: str, found: list[str]) -> str:
    return f"{rule}; offending imports:\n  " + "\n  ".join(found)


# --- the package obeys them -----------------------------------------------------------


def test_the_walk_sees_every_module_the_rules_name(package: dict[str, list[Import]]) -> None:
    # A renamed module would silently drop out of a rule.
    for short in PROTOCOL_MODULES:
        assert f"{PACKAGE}.{short}" in package, f"{short}.py is gone: update PROTOCOL_MODULES"
    assert f"{PACKAGE}.cli" in package
    assert f"{PACKAGE}.testing._server" in package
    # ...and the walk does find imports (of both kinds, relative ones resolved).
    assert any(imp.target == "aiohttp" for imp in package[f"{PACKAGE}._transport"])
    assert any(
        imp.target == f"{PACKAGE}.testing._wire.RecordedRequest"
        for imp in package[f"{PACKAGE}.testing._faults"]
    )


def test_protocol_models_and_errors_import_no_aiohttp(package: dict[str, list[Import]]) -> None:
    found = violations(package, is_protocol_module, imports_aiohttp)
    assert not found, _failure(
        "the protocol, models and errors modules must not import aiohttp", found
    )


def test_nothing_outside_the_cli_imports_it(package: dict[str, list[Import]]) -> None:
    found = violations(package, is_outside_cli, imports_cli)
    assert not found, _failure("only inveterate_async/cli/ may import from the CLI", found)


def test_the_sandbox_imports_nothing_from_the_client(package: dict[str, list[Import]]) -> None:
    found = violations(package, is_in_testing, imports_package_outside_testing)
    assert not found, _failure(
        "inveterate_async/testing/ must not import the rest of inveterate_async", found
    )


def test_the_bulk_layer_does_not_import_the_client(package: dict[str, list[Import]]) -> None:
    assert f"{PACKAGE}._bulk.run" in package
    found = violations(package, is_in_bulk, imports_above_the_bulk_layer)
    assert not found, _failure(
        "inveterate_async/_bulk/ uses the API through _bulk.api.CreditsAPI only", found
    )


# --- the checker catches what it should (so the tests above can fail) -------------------


@pytest.mark.parametrize(
    "source",
    [
        "from .._client import InveterateClient",
        "def f():\n    from inveterate_async._client import InveterateClient",
        "import aiohttp",
        "from ..cli import main",
    ],
)
def test_checker_reports_the_bulk_layer_importing_the_client(source: str) -> None:
    found = check(source, f"{PACKAGE}._bulk.run", is_in_bulk, imports_above_the_bulk_layer)
    assert len(found) == 1


def test_checker_lets_the_bulk_layer_import_the_layers_below() -> None:
    source = "from .._errors import JournalError\nfrom .journal import Journal\nimport sqlite3"
    assert check(source, f"{PACKAGE}._bulk.run", is_in_bulk, imports_above_the_bulk_layer) == []


def check(
    source: str, module: str, applies: Callable[[str], bool], rule: Rule, *, package: bool = False
) -> list[str]:
    return violations({module: list(imports_of(source, module, package))}, applies, rule)


@pytest.mark.parametrize(
    "source",
    [
        "import aiohttp",
        "import aiohttp.web as web",
        "from aiohttp import ClientSession",
        "from aiohttp.client_exceptions import ClientError",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aiohttp",
        "def f():\n    from aiohttp import web",
        "import importlib\nimportlib.import_module('aiohttp')",
        "__import__('aiohttp.web')",
    ],
)
def test_checker_reports_aiohttp_in_a_protocol_module(source: str) -> None:
    found = check(source, f"{PACKAGE}._http", is_protocol_module, imports_aiohttp)
    assert len(found) == 1
    assert found[0].startswith(f"{PACKAGE}._http:")


def test_checker_allows_aiohttp_lookalikes_and_the_transport() -> None:
    source = "import aiohttp_retry\nfrom .aiohttp import x\nfrom . import _aiohttp"
    assert check(source, f"{PACKAGE}._http", is_protocol_module, imports_aiohttp) == []
    assert (
        check("import aiohttp", f"{PACKAGE}._transport", is_protocol_module, imports_aiohttp) == []
    )


@pytest.mark.parametrize(
    ("module", "source", "is_package", "target"),
    [
        (f"{PACKAGE}._client", "from .cli import main", False, f"{PACKAGE}.cli.main"),
        (f"{PACKAGE}._client", "from . import cli", False, f"{PACKAGE}.cli"),
        (f"{PACKAGE}._client", "from .cli._app import app", False, f"{PACKAGE}.cli._app.app"),
        (f"{PACKAGE}._client", "import inveterate_async.cli._core", False, f"{PACKAGE}.cli._core"),
        (f"{PACKAGE}._client", "from inveterate_async import cli", False, f"{PACKAGE}.cli"),
        (PACKAGE, "from .cli import main", True, f"{PACKAGE}.cli.main"),
        (f"{PACKAGE}.testing._server", "from ..cli import main", False, f"{PACKAGE}.cli.main"),
        (f"{PACKAGE}.testing", "from ..cli._exits import E", True, f"{PACKAGE}.cli._exits.E"),
    ],
)
def test_checker_reports_imports_of_the_cli(
    module: str, source: str, is_package: bool, target: str
) -> None:
    found = check(source, module, is_outside_cli, imports_cli, package=is_package)
    assert found == [f"{module}:1 imports {target}"]


def test_checker_lets_the_cli_import_itself() -> None:
    source = "from . import _output\nfrom ._core import run\nfrom inveterate_async.cli import main"
    assert check(source, f"{PACKAGE}.cli._app", is_outside_cli, imports_cli) == []
    # One dot in a package's __init__ is the package itself, not its parent.
    found = check("from . import cli", f"{PACKAGE}.cli", is_outside_cli, imports_cli, package=True)
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "is_package", "target"),
    [
        (f"{PACKAGE}.testing._server", "from .. import _json", False, f"{PACKAGE}._json"),
        (f"{PACKAGE}.testing._server", "from ..x import y", False, f"{PACKAGE}.x.y"),
        (f"{PACKAGE}.testing._server", "from .. import *", False, PACKAGE),
        (f"{PACKAGE}.testing._server", "import inveterate_async", False, PACKAGE),
        (
            f"{PACKAGE}.testing._server",
            "from inveterate_async._money import DECIMAL_TEXT",
            False,
            f"{PACKAGE}._money.DECIMAL_TEXT",
        ),
        (
            f"{PACKAGE}.testing._server",
            "from inveterate_async import InveterateClient",
            False,
            f"{PACKAGE}.InveterateClient",
        ),
        (f"{PACKAGE}.testing", "from .. import _request", True, f"{PACKAGE}._request"),
        (f"{PACKAGE}.testing._sub.deep", "from ... import _http", False, f"{PACKAGE}._http"),
    ],
)
def test_checker_reports_the_sandbox_importing_the_client(
    module: str, source: str, is_package: bool, target: str
) -> None:
    found = check(
        source, module, is_in_testing, imports_package_outside_testing, package=is_package
    )
    assert found == [f"{module}:1 imports {target}"]


def test_checker_lets_the_sandbox_import_itself() -> None:
    source = (
        "from . import _wire\n"
        "from ._ledger import Ledgers\n"
        "from inveterate_async.testing._server import Sandbox\n"
        "from inveterate_async import testing\n"
        "import inveterate_async.testing._faults\n"
    )
    assert (
        check(source, f"{PACKAGE}.testing._server", is_in_testing, imports_package_outside_testing)
        == []
    )
    # In testing/__init__.py one dot is testing itself: allowed; two dots leave it.
    assert (
        check(
            "from . import _wire",
            f"{PACKAGE}.testing",
            is_in_testing,
            imports_package_outside_testing,
            package=True,
        )
        == []
    )
    assert check(
        "from .. import _wire",
        f"{PACKAGE}.testing",
        is_in_testing,
        imports_package_outside_testing,
        package=True,
    ) == [f"{PACKAGE}.testing:1 imports {PACKAGE}._wire"]


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


def test_module_names_come_from_paths(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    assert module_name(root / "__init__.py", root) == PACKAGE
    assert module_name(root / "testing" / "__init__.py", root) == f"{PACKAGE}.testing"
    assert module_name(root / "testing" / "_wire.py", root) == f"{PACKAGE}.testing._wire"


def test_a_package_on_disk_that_breaks_every_rule_is_reported(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "testing").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "__init__.py").write_text("")
    (root / "_errors.py").write_text("from aiohttp import ClientError\n")
    (root / "_client.py").write_text("from .cli import main\n")
    (root / "cli" / "__init__.py").write_text("from .. import _client\n")
    (root / "testing" / "__init__.py").write_text("from ._server import Sandbox\n")
    (root / "testing" / "_server.py").write_text("import aiohttp\nfrom .._errors import X\n")
    modules = parse_package(root)
    assert violations(modules, is_protocol_module, imports_aiohttp) == [
        f"{PACKAGE}._errors:1 imports aiohttp.ClientError"
    ]
    assert violations(modules, is_outside_cli, imports_cli) == [
        f"{PACKAGE}._client:1 imports {PACKAGE}.cli.main"
    ]
    assert violations(modules, is_in_testing, imports_package_outside_testing) == [
        f"{PACKAGE}.testing._server:2 imports {PACKAGE}._errors.X"
    ]
