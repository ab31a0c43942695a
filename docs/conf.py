"""Sphinx configuration: furo, MyST markdown and autodoc; builds offline.

``sphinx-build -W --keep-going -b html docs build/html`` (CI runs it; any warning fails).
"""

from typing import Any

import attrs
from sphinx.application import Sphinx

from inveterate_async import __version__

project = "inveterate_async"
author = "inveterate_async developers"
copyright = "inveterate_async developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", ".DS_Store"]

# Links such as errors.md#writes-of-unknown-outcome resolve to headings up to level 3.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# The docstrings use reST field lists (:param x:, :returns:, :raises X:).
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
# Keeps defaults as written (UNSET, DEFAULT_MAX_CONNECTIONS, asyncio.sleep), not their reprs.
autodoc_preserve_defaults = True
autodoc_default_options = {
    "members": True,
    # attrs fields have no docstrings of their own: list them with their types.
    "undoc-members": True,
    "show-inheritance": True,
    # The error choke point's helpers: public methods, but not for users.
    "exclude-members": "add_context, redact",
}
python_use_unqualified_type_names = True

html_theme = "furo"
html_title = f"inveterate_async {release}"
html_static_path: list[str] = []


# Made by the SDK, never by users: shown without their constructor's internals.
MADE_BY_THE_SDK = {"inveterate_async.CreditStream"}


def class_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """A class's signature: none for one made by the SDK; for an attrs class, its fields
    (attrs generates ``__init__`` from source text, ``attr_dict['note'].default``, that
    autodoc would show as is)."""
    if what != "class":
        return None
    if name in MADE_BY_THE_SDK:
        return "", return_annotation
    if not attrs.has(obj):
        return None
    parameters = []
    keyword_only = False
    for field in attrs.fields(obj):
        if not field.init:
            continue
        if field.kw_only and not keyword_only:
            parameters.append("*")
            keyword_only = True
        if field.default is attrs.NOTHING:
            parameters.append(field.alias)
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            parameters.append(f"{field.alias}={field.default.factory.__name__}()")
        else:
            parameters.append(f"{field.alias}={field.default!r}")
    return f"({', '.join(parameters)})", return_annotation


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", class_signature)
