"""A YAML reader that refuses a key written twice in one mapping (plain PyYAML keeps the last one, so a
repeated section or key would silently drop the first)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

from pipelines.params.base import short_repr


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises on a duplicate key, naming it and both lines. Keys brought in by a
    merge (``<<: *base``) may still be overridden: that is what a merge is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {short_repr(key)} on line {line} (first on line {first})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load``, refusing duplicate keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
