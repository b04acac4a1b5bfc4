"""Config validation with ``snakemake.utils.validate`` against the workflow's one JSON schema
(``schemas/config.schema.yaml``: draft 2020-12, one ``$defs`` entry per stage).

Defaults declared in the schema are filled in, and an error names the offending key as a
dotted path (``receivers.top_k``), so a bad config stops the run with a message a person can act
on.
"""

from __future__ import annotations

import argparse
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

# JSON Schema counts 60.0 as an integer; a config integer must be written as one (60), or a float
# reaches code that needs an int (a window size, ``max_tokens`` sent to the API, a problem id in a
# file name).
StrictIntegerValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


class ConfigError(ValueError):
    """The config does not match the schema."""


def describe(error: ValidationError) -> str:
    """One line naming the config key of a schema violation as a dotted path."""
    path = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        return f"unknown config key under '{path}': {error.message}"
    return f"config key '{path}': {error.message}"


def _validation_error(error: BaseException | None) -> ValidationError | None:
    """The jsonschema error behind Snakemake's ``WorkflowError`` (raised while handling it)."""
    while error is not None and not isinstance(error, ValidationError):
        error = error.__cause__ or error.__context__
    return error


def validate_config(config: MutableMapping[str, Any], schema_path: str | Path) -> None:
    """Fill schema defaults into ``config`` in place (``snakemake.utils.validate``), then raise
    :class:`ConfigError` naming the key of the first violation; integers given as floats
    (``60.0``) are violations too."""
    from snakemake.utils import validate

    schema_file = Path(schema_path).resolve()
    try:
        validate(config, str(schema_file), set_default=True)
    except Exception as error:
        violation = _validation_error(error)
        if violation is None:
            raise
        raise ConfigError(f"invalid config: {describe(violation)}") from None
    schema = yaml.safe_load(schema_file.read_text(encoding="utf-8"))
    strict = sorted(
        StrictIntegerValidator(schema).iter_errors(config),
        key=lambda error: list(map(str, error.absolute_path)),
    )
    if strict:
        raise ConfigError(f"invalid config: {describe(strict[0])} (write integers without a point)")


def main() -> None:
    """``anchorflow-validate-config CONFIG [--schema FILE]``: check a config file, print it with
    the defaults filled in."""
    parser = argparse.ArgumentParser(description=main.__doc__.split(":")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument(
        "--schema", type=Path, default=Path("schemas/config.schema.yaml"), help="schema file"
    )
    arguments = parser.parse_args()
    config = yaml.safe_load(arguments.config.read_text(encoding="utf-8"))
    try:
        validate_config(config, arguments.schema)
    except ConfigError as error:
        raise SystemExit(f"{arguments.config}: {error}") from None
    print(yaml.safe_dump(config, sort_keys=False), end="")


if __name__ == "__main__":
    main()
