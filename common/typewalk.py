"""Walking msgspec's descriptions of types (`msgspec.inspect`): what a type is made of."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec.inspect as inspect

# Types made of fields (each field's type is a part).
RECORDS = (
    inspect.StructType, inspect.DataclassType, inspect.TypedDictType, inspect.NamedTupleType
)  # fmt: skip


def walk(info: inspect.Type) -> Iterator[inspect.Type]:
    """`info` and every type it is made of (union members, items, keys and values,
    fields), each once: a recursive type ends where it repeats."""
    seen: set[int] = set()
    todo = [info]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(parts(current))


def parts(info: inspect.Type) -> list[inspect.Type]:
    """The types `info` is directly made of (none for a leaf)."""
    if isinstance(info, inspect.UnionType):
        return list(info.types)
    if isinstance(info, inspect.TupleType):
        return list(info.item_types)
    if isinstance(info, inspect.CollectionType):  # list, set, frozenset, tuple[x, ...]
        return [info.item_type]
    if isinstance(info, inspect.DictType):
        return [info.key_type, info.value_type]
    if isinstance(info, RECORDS):
        return [field.type for field in info.fields]
    return []
