"""mi-catalog: a searchable, runnable catalog of actionable mechanistic interpretability.

Public API::

    from mi_catalog import Catalog        # query, get, validate, index (see mi_catalog.api)
    from mi_catalog import vocab          # the controlled vocabulary

Attributes are imported lazily so that ``mi-catalog query`` stays fast and
never imports torch, transformers or pydantic it does not need.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Catalog", "Hit", "QueryResult", "__version__"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any

    from mi_catalog.api import Catalog
    from mi_catalog.query import Hit, QueryResult


def __getattr__(name: str) -> Any:
    if name == "Catalog":
        from mi_catalog.api import Catalog

        return Catalog
    if name in ("Hit", "QueryResult"):
        from mi_catalog import query

        return getattr(query, name)
    raise AttributeError(f"module 'mi_catalog' has no attribute {name!r}")
