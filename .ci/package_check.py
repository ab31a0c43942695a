"""Checks of the package as it would be published (run by ``.ci/run``, not by pytest).

``python .ci/package_check.py wheel DIST``: the wheel holds the package with its
``py.typed`` and nothing else (no tests), and its metadata names the extras.
``python .ci/package_check.py smoke``: run with a virtualenv's interpreter where only the
wheel is installed: the package imports from there and works end to end on its sandbox.
"""

from __future__ import annotations

import asyncio
import sys
import zipfile
from decimal import Decimal
from email.parser import Parser
from pathlib import Path

EXTRAS = {"cli", "cluster", "docs", "test", "dev"}


def check_wheel(dist: Path) -> None:
    """Fail (AssertionError) unless the one wheel in ``dist`` is what is published."""
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(metadata).decode())
    top = {name.split("/")[0] for name in names}
    assert top == {"inveterate_async", metadata.split("/")[0]}, top
    assert "inveterate_async/py.typed" in names
    assert not any("/tests/" in name or name.startswith("tests/") for name in names)
    extras = set(meta.get_all("Provides-Extra") or [])
    assert extras >= EXTRAS, extras
    assert meta["Requires-Python"] == ">=3.10"
    print(f"wheel ok: {wheel.name}, {len(names)} files")


def installed() -> Path:
    """Where the package is imported from: a virtualenv's site-packages, with py.typed."""
    import inveterate_async

    where = Path(inveterate_async.__file__).resolve().parent
    assert "site-packages" in where.parts, where
    assert (where / "py.typed").exists()
    return where


async def smoke(where: Path) -> None:
    """Use the installed package against its sandbox."""
    import inveterate_async
    from inveterate_async import InveterateClient
    from inveterate_async.testing import Sandbox

    async with Sandbox(api_key="smoke-key") as sandbox:
        sandbox.add_credits("42", ["10.00"])
        async with InveterateClient("smoke-key", base_url=sandbox.base_url) as client:
            await client.create_credit("42", Decimal("-2.50"), note="smoke")
            amounts = [credit.amount async for credit in client.iter_credits("42")]
    assert amounts == [Decimal("10.00"), Decimal("-2.50")], amounts
    print(f"smoke ok: inveterate_async {inveterate_async.__version__} from {where}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["wheel"]:
        check_wheel(Path(sys.argv[2]))
    elif sys.argv[1:] == ["smoke"]:
        asyncio.run(smoke(installed()))
    else:
        sys.exit("usage: package_check.py wheel DIST | smoke")
