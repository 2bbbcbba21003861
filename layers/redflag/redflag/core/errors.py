"""Validation errors that name their field, from checks that span several fields. Pure."""

from __future__ import annotations

from typing import NoReturn

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def invalid(field: str, message: str, model: str = "Rule") -> NoReturn:
    """Raise a validation error located at ``field`` (dotted), as a field's own check would."""
    error = InitErrorDetails(type=PydanticCustomError("invalid", message), loc=tuple(field.split(".")), input=None)
    raise ValidationError.from_exception_data(model, [error])


def missing(field: str, model: str = "Rule") -> NoReturn:
    raise ValidationError.from_exception_data(model, [InitErrorDetails(type="missing", loc=(field,), input=None)])
