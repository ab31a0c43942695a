"""Stands in for msgspec in the CI leg without it: importing it fails as if not installed.

``PYTHONPATH=tests/no_msgspec pytest`` puts this directory first on the import path, so
``import msgspec`` finds this module instead of the installed package and fails with
the same exception type as a missing package (``ModuleNotFoundError``): the SDK then
parses JSON with the standard library, exactly as for users without msgspec, and tests
that need msgspec skip through ``pytest.importorskip``.
"""

raise ModuleNotFoundError("msgspec made unimportable for this test run", name="msgspec")
