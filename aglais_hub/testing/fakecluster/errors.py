"""API errors carried as Kubernetes `Status` objects."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API server answers with a `Status` body."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def not_found(cls, resource: str, name: str, group: str = "") -> ApiError:
        qualified = f"{resource}.{group}" if group else resource
        return cls(
            404,
            "NotFound",
            f'{qualified} "{name}" not found',
            {"name": name, "group": group, "kind": resource},
        )

    @classmethod
    def already_exists(cls, resource: str, name: str, group: str = "") -> ApiError:
        qualified = f"{resource}.{group}" if group else resource
        return cls(
            409,
            "AlreadyExists",
            f'{qualified} "{name}" already exists',
            {"name": name, "group": group, "kind": resource},
        )

    @classmethod
    def conflict(cls, resource: str, name: str, why: str) -> ApiError:
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": {why}',
            {"name": name, "kind": resource},
        )

    @classmethod
    def invalid(cls, kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
        text = "; ".join(f"{field}: {msg}" for field, msg in causes)
        return cls(
            422,
            "Invalid",
            f'{kind} "{name}" is invalid: {text}',
            {
                "name": name,
                "kind": kind,
                "causes": [
                    {"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes
                ],
            },
        )

    @classmethod
    def forbidden(cls, resource: str, name: str, why: str) -> ApiError:
        return cls(
            403,
            "Forbidden",
            f'{resource} "{name}" is forbidden: {why}',
            {"name": name, "kind": resource},
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)
