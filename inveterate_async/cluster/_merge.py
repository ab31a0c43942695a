"""One file from the shards: JSON Lines by concatenation, or rows for another writer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from .._export.rows import EXPORT_COLUMNS
from ._files import write_atomically


def merge_jsonl(shards: Sequence[Path], target: Path) -> int:
    """Concatenate the shard files into ``target`` (written aside, then renamed).

    The result has the bytes ``inveterate credits export --format jsonl`` writes, members
    in shard order and each ledger in order.

    :param shards: the shard files, in order (:meth:`ExportPlan.shard_files`).
    :param target: the merged file; an existing one is replaced.
    :returns: the number of rows.
    """

    def fill(out: TextIO) -> int:
        rows = 0
        for path in shards:
            with open(path, encoding="utf-8", newline="") as shard:
                for line in shard:
                    out.write(line)
                    rows += 1
        return rows

    return write_atomically(target, fill)


def read_rows(shards: Sequence[Path]) -> Iterator[tuple[Any, ...]]:
    """The rows of the shard files, as values in :data:`EXPORT_COLUMNS` order.

    Money comes back as :class:`~decimal.Decimal` with its exact digits.

    :param shards: the shard files, in order (:meth:`ExportPlan.shard_files`).
    """
    for path in shards:
        with open(path, encoding="utf-8") as shard:
            for line in shard:
                row = json.loads(line, parse_float=Decimal)
                yield tuple(row[name] for name in EXPORT_COLUMNS)
