"""Command-line flags made from documented config dataclasses.

Every config field that a command exposes is written once, with its default and its help, as
`field(default=..., metadata={"help": ...})` (TRL's style); `add_config_flags` turns such fields into flags and
`config_values` reads them back, so a default lives in exactly one place. A field without a default is a
required flag; a boolean one is a `--name/--no-name` pair; a tuple one takes comma-separated items, or
space-separated ones with `nargs`. Optional metadata: `choices`, `type` (where the annotation does not say it),
`flag` (another flag name), `metavar`, `nargs`, and `action="append"` (a tuple given one item per use).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

NO_DEFAULT = "%(default).0s"  # a help-string format that prints nothing: the help says what the default is


def add_config_flags(group, cls, *, prefix: str = "", exclude: tuple[str, ...] = ()) -> None:
    """One flag per documented field of `cls` (`--PREFIX-field-name`), its value in `args.PREFIX_field_name`."""
    for item in fields(cls):
        if item.name in exclude or "help" not in item.metadata:
            continue
        meta = item.metadata
        default = (
            item.default
            if item.default is not MISSING
            else (item.default_factory() if item.default_factory is not MISSING else None)
        )
        required = item.default is MISSING and item.default_factory is MISSING
        options = {"dest": _dest(prefix, item.name), "default": default, "required": required}
        kind = meta.get("type") or (type(default) if default is not None else _annotated_type(item.type))
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple) and meta.get("action") == "append":  # one item per use of the flag
            options.update(action="append", default=None, type=type(default[0]) if default else str)
            options["metavar"] = meta.get("metavar", options["type"].__name__.upper())
        elif isinstance(default, tuple) and "nargs" in meta:
            options.update(nargs=meta["nargs"], type=type(default[0]) if default else str)
            options["metavar"] = meta.get("metavar", options["type"].__name__.upper())
        elif isinstance(default, tuple):
            item_kind = type(default[0]) if default else str
            options["type"] = lambda text, item_kind=item_kind: tuple(
                item_kind(x.strip()) for x in text.split(",") if x.strip()
            )
            options["metavar"] = meta.get("metavar", "A,B,...")
        else:
            options["type"] = kind
            options["metavar"] = meta.get("metavar", kind.__name__.upper())
        if "choices" in meta:
            options["choices"] = meta["choices"]
            options.pop("metavar", None)
        help_text = meta["help"].replace("%", "%%")
        if isinstance(default, tuple):
            separator = " " if "nargs" in meta else ","
            help_text += f" (default: {separator.join(map(str, default))})" + NO_DEFAULT
        else:
            help_text += " (default: %(default)s)" if default is not None else NO_DEFAULT
        group.add_argument(meta.get("flag", "--" + prefix + item.name.replace("_", "-")), help=help_text, **options)


def config_values(args: argparse.Namespace, cls, *, prefix: str = "") -> dict:
    """The values `add_config_flags` parsed for `cls`, by field name (fields without a flag are left out)."""
    values = {
        item.name: getattr(args, _dest(prefix, item.name))
        for item in fields(cls)
        if "help" in item.metadata and hasattr(args, _dest(prefix, item.name))
    }
    appended = {item.name for item in fields(cls) if item.metadata.get("action") == "append"}
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in values.items()
        if not (name in appended and value is None)  # never given: the field's default
    }


def _annotated_type(annotation) -> type:
    """The first of int, float, bool, Path, str that a field's annotation (`float | None`, as text or type) names."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    names = [part.strip() for part in text.split("|")]
    return next((kind for kind in (int, float, bool, Path, str) if kind.__name__ in names), str)


def _dest(prefix: str, name: str) -> str:
    return prefix.replace("-", "_") + name
