"""Config validation against the workflow's JSON schemas (draft 2020-12, YAML files).

Defaults declared in the schema are filled in, and the first error names the offending
key as a dotted path (``receivers.top_k``), so a bad config stops the run with a message a
person can act on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


class ConfigError(ValueError):
    """The config does not match the schema."""


def _with_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: dict, instance: Any, schema: dict
    ) -> Iterator[ValidationError]:
        if isinstance(instance, MutableMapping):
            for name, subschema in properties.items():
                if name in instance:
                    continue
                if "default" in subschema:
                    instance[name] = copy.deepcopy(subschema["default"])
                elif "$ref" in subschema:
                    resolved = validator._resolver.lookup(subschema["$ref"]).contents
                    if "default" in resolved:
                        instance[name] = copy.deepcopy(resolved["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _load_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def _stage_schema(path: Path) -> dict[str, Any]:
    """A stage schema without its ``$schema`` key, so the default-filling validator class is kept
    when a ``$ref`` descends into it (every schema here is draft 2020-12)."""
    contents = _load_yaml(path)
    contents.pop("$schema", None)
    return contents


def _registry(schema_dir: Path) -> Registry:
    return Registry().with_resources(
        (file.name, Resource.from_contents(_stage_schema(file), default_specification=DRAFT202012))
        for file in sorted(schema_dir.glob("*.schema.yaml"))
    )


def _describe(error: ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        return f"unknown config key under '{path}': {error.message}"
    return f"config key '{path}': {error.message}"


def validate_config(config: MutableMapping[str, Any], schema_path: str | Path) -> None:
    """Fill schema defaults into ``config`` in place, then raise :class:`ConfigError` on the
    first violation, naming its key path."""
    schema_file = Path(str(schema_path))
    schema = _load_yaml(schema_file)
    registry = _registry(schema_file.parent)
    filling = _with_defaults(Draft202012Validator)(schema, registry=registry)
    for _ in filling.iter_errors(config):
        pass
    strict = Draft202012Validator(schema, registry=registry)
    errors = sorted(strict.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        details = "\n".join(f"  - {_describe(error)}" for error in errors[:10])
        raise ConfigError(f"invalid config ({len(errors)} problem(s)):\n{details}")
