"""The generated models (conveyor_events, written by scripts/generate-models) read every
example the schemas give, and refuse one without a field its schema requires."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pydantic
import pytest

SCHEMAS = Path(__file__).resolve().parents[3] / "events-schema" / "schemas"


def model_name(folder: str, version: int) -> str:
    """`order.deadline-passed` v1 is `OrderDeadlinePassedV1`, as the Rust types are named."""
    if folder == "envelope":
        return f"ConveyorEventEnvelopeV{version}"
    words = folder.replace("-", ".").split(".")
    return "".join(word[:1].upper() + word[1:] for word in words) + f"V{version}"


def schema_files() -> list[Path]:
    return sorted(SCHEMAS.glob("*/v*.json"))


def model_of(path: Path) -> type[pydantic.BaseModel]:
    folder, version = path.parent.name, int(path.stem[1:])
    module = importlib.import_module(
        f"conveyor_events.{folder.replace('.', '_').replace('-', '_')}.v{version}"
    )
    return getattr(module, model_name(folder, version))


def test_there_is_a_model_for_every_schema() -> None:
    files = schema_files()
    assert len(files) >= 40, files
    for path in files:
        assert issubclass(model_of(path), pydantic.BaseModel), path


@pytest.mark.parametrize("path", schema_files(), ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_each_example_reads_and_a_required_field_is_missed(path: Path) -> None:
    schema = json.loads(path.read_text())
    model = model_of(path)
    examples = schema.get("examples", [])
    assert examples, f"{path} has no example"
    for example in examples:
        read = model.model_validate(example)
        assert read.model_dump(mode="json", exclude_unset=True).keys() <= example.keys()
        required = schema.get("required", [])
        if required:
            incomplete = {key: value for key, value in example.items() if key != required[0]}
            with pytest.raises(pydantic.ValidationError):
                model.model_validate(incomplete)
