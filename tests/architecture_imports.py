"""Reading the package's imports from its source with ``ast`` (for the architecture tests).

Every import statement counts, wherever it is (inside functions, ``TYPE_CHECKING``
blocks, ``try``), and so does ``importlib.import_module``/``__import__`` with a literal
name. Relative imports are resolved to absolute names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs

PACKAGE = "inveterate_async"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


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


def parse_package(root: Path = ROOT) -> dict[str, list[Import]]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        source = path.read_text(encoding="utf-8")
        modules[name] = list(imports_of(source, name, is_package=path.name == "__init__.py"))
    return modules
