"""``docs/params.md``: every key with its type, default and description, from the schema."""


from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
)

from pipelines.params.study import (
    StudyParams,
)

_BOUND_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _constraints(metadata: list[Any]) -> list[str]:
    """Readable constraints from pydantic / annotated-types metadata (``Gt(gt=0)`` -> ``> 0``)."""
    out: list[str] = []
    for item in metadata:
        if hasattr(item, "metadata") and not hasattr(item, "gt"):  # a FieldInfo inside Annotated[...]
            out += _constraints(list(item.metadata))
            continue
        found = False
        for attr, symbol in _BOUND_SYMBOLS.items():
            if getattr(item, attr, None) is not None:
                out.append(f"{symbol} {getattr(item, attr)}")
                found = True
        for attr, words in (("min_length", "length >="), ("max_length", "length <=")):
            if getattr(item, attr, None) is not None:
                out.append(f"{words} {getattr(item, attr)}")
                found = True
        if getattr(item, "pattern", None):
            out.append(f"matching `{item.pattern}`")
        elif not found:
            out.append(repr(item))
    return out


def _type_label(ann: Any) -> str:
    """A short type name for the docs: ``list[int (>= 0)]``, ``int (> 0) | None``, ``'dct' | 'cg'``."""
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        bounds = _constraints(list(args[1:]))
        return _type_label(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_label(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        shown = ", ".join("..." if a is Ellipsis else _type_label(a) for a in args)
        return f"{name}[{shown}]" if args else name
    if ann is type(None):
        return "None"
    return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")


def params_reference() -> str:
    """Markdown reference of every params.yaml key, generated from this schema (docs/params.md).

    Defaults are read from the default *instance* of each section, so a nested section shows what its
    parent sets (``train.turbulence.optimiser.batch_size`` is 4, not the class default 8).
    """
    lines = [
        "# params.yaml reference",
        "",
        "Generated from `pipelines/params/` by `python -m pipelines.params > docs/params.md`;",
        "a test keeps it current. Every key is optional: a missing one takes the default shown.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str, defaults: BaseModel | None) -> None:
        lines.extend([f"## `{prefix}`", ""])
        doc = (model.__doc__ or "").strip().replace("\n    ", " ")
        lines.extend([doc, ""] if doc else [])
        rows, nested = [], []
        for name, info in model.model_fields.items():
            ann = info.annotation
            if defaults is not None:
                default: Any = getattr(defaults, name)
            elif info.is_required():
                default = None
            else:
                default = info.get_default(call_default_factory=True)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((ann, f"{prefix}.{name}", default))
                continue
            shown = "required" if defaults is None and info.is_required() else f"`{default}`"
            kind = _type_label(ann)
            bounds = _constraints(list(info.metadata))  # constraints given in Field(...)
            kind += f" ({', '.join(bounds)})" if bounds else ""
            kind = kind.replace("|", "\\|")  # a literal pipe inside a table cell
            rows.append(f"| `{name}` | {kind} | {shown} | {info.description or ''} |")
        if rows:
            lines.extend(["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for sub, sub_prefix, sub_default in nested:
            walk(sub, sub_prefix, sub_default)

    root = StudyParams.model_construct()  # defaults only: no validation needed to read them
    sections = {n: i for n, i in StudyParams.model_fields.items() if isinstance(i.annotation, type)
                and issubclass(i.annotation, BaseModel)}  # fmt: skip
    top = [f"| `{n}` | {_type_label(i.annotation)} | `{getattr(root, n)}` | {i.description or ''} |"
           for n, i in StudyParams.model_fields.items() if n not in sections]  # fmt: skip
    lines.extend(["## top level", "", "| key | type | default | meaning |", "|---|---|---|---|", *top, ""])
    for name, info in sections.items():
        walk(info.annotation, name, getattr(root, name, None))  # type: ignore[arg-type]
    return "\n".join(lines)

