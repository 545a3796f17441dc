"""The OpenAPI 3 description of the REST API (served at /openapi.json).

Kept as a plain dict next to the handlers so a test can check that every route
the app serves is documented and every documented path is served.
"""

from __future__ import annotations

import copy
from typing import Any

from rackctl import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error")

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Modbus unit id of the device",
    "schema": {"type": "integer", "minimum": 1, "maximum": 247},
}

_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "what went wrong and what to do"}},
    },
    "Device": {
        "type": "object",
        "required": ["id", "board", "name", "online"],
        "properties": {
            "id": {"type": "integer"},
            "board": {"type": "string", "enum": ["power_shelf", "cdu", "unknown"]},
            "name": {"type": "string"},
            "online": {"type": "boolean"},
            "identity": {"type": "object", "additionalProperties": True},
        },
    },
    "Register": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "table": {"type": "string", "enum": ["coil", "discrete", "input", "holding"]},
            "address": {"type": "integer"},
            "type": {"type": "string"},
            "unit": {"type": "string"},
            "access": {"type": "string", "enum": ["ro", "rw", "protected"]},
            "min": {"type": "number", "nullable": True},
            "max": {"type": "number", "nullable": True},
            "description": {"type": "string"},
        },
    },
    "DeviceDetail": {
        "allOf": [
            _ref("Device"),
            {
                "type": "object",
                "properties": {"registers": {"type": "array", "items": _ref("Register")}},
            },
        ]
    },
    "Value": {
        "type": "object",
        "properties": {
            "value": {"description": "scaled value: number, string, enum name or flag list"},
            "unit": {"type": "string"},
            "ts": {"type": "number", "description": "unix seconds of the poll"},
        },
    },
    "History": {
        "type": "object",
        "properties": {
            "device": {"type": "integer"},
            "register": {"type": "string"},
            "from": {"type": "number"},
            "to": {"type": "number"},
            "resolution": {"type": "number", "nullable": True},
            "points": {
                "type": "array",
                "items": {"type": "array", "minItems": 2, "maxItems": 4, "items": {}},
                "description": "[unix seconds, value] or [unix seconds, avg, min, max], oldest first",
            },
        },
    },
    "Alarm": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "device": {"type": "integer"},
            "name": {"type": "string"},
            "severity": {"type": "string"},
            "active": {"type": "boolean"},
            "acked": {"type": "boolean"},
            "raised_at": {"type": "number", "nullable": True},
            "cleared_at": {"type": "number", "nullable": True},
            "message": {"type": "string"},
        },
    },
    "Counters": {
        "type": "object",
        "description": "per device id",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "requests": {"type": "integer"},
                "crc_errors": {"type": "integer"},
                "timeouts": {"type": "integer"},
                "exceptions": {"type": "integer"},
            },
        },
    },
    "WriteRequest": {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"oneOf": [{"type": "number"}, {"type": "string"}]},
            "unlock": {
                "type": "boolean",
                "default": False,
                "description": "required for protected registers",
            },
        },
    },
    "WriteResult": {
        "type": "object",
        "properties": {
            "device": {"type": "integer"},
            "register": {"type": "string"},
            "value": {},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/devices": {
        "get": {
            "summary": "Devices on the bus",
            "operationId": "listDevices",
            "responses": {"200": _json({"type": "array", "items": _ref("Device")}, "devices")},
        }
    },
    "/api/devices/{id}": {
        "get": {
            "summary": "One device with its register map",
            "operationId": "getDevice",
            "parameters": [_ID],
            "responses": {"200": _json(_ref("DeviceDetail"), "device"), "404": _ERR},
        }
    },
    "/api/devices/{id}/values": {
        "get": {
            "summary": "Latest polled value of every register",
            "operationId": "getValues",
            "parameters": [_ID],
            "responses": {
                "200": _json({"type": "object", "additionalProperties": _ref("Value")}, "values"),
                "404": _ERR,
            },
        }
    },
    "/api/devices/{id}/history": {
        "get": {
            "summary": "Stored history of one register",
            "operationId": "getHistory",
            "parameters": [
                _ID,
                {"name": "register", "in": "query", "required": True, "schema": {"type": "string"}},
                {
                    "name": "from",
                    "in": "query",
                    "description": "unix seconds (default: one hour before 'to')",
                    "schema": {"type": "number"},
                },
                {
                    "name": "to",
                    "in": "query",
                    "description": "unix seconds (default: now)",
                    "schema": {"type": "number"},
                },
                {
                    "name": "resolution",
                    "in": "query",
                    "description": "bucket width in seconds: points become [ts, avg, min, max]; "
                    "0 = raw [ts, value] samples; absent = raw while inside the raw retention, "
                    "else minute buckets",
                    "schema": {"type": "number", "minimum": 0},
                },
            ],
            "responses": {"200": _json(_ref("History"), "history"), "400": _ERR, "404": _ERR},
        }
    },
    "/api/devices/{id}/registers/{name}": {
        "post": {
            "summary": "Write a register (range-checked; protected ones need unlock)",
            "operationId": "writeRegister",
            "security": _SECURED,
            "parameters": [
                _ID,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("WriteRequest")}},
            },
            "responses": {
                "200": _json(_ref("WriteResult"), "written"),
                "400": _ERR,
                "401": _ERR,
                "403": _ERR,
                "404": _ERR,
                "502": _ERR,
                "504": _ERR,
            },
        }
    },
    "/api/alarms": {
        "get": {
            "summary": "Alarms (active and history)",
            "operationId": "listAlarms",
            "parameters": [
                {
                    "name": "active",
                    "in": "query",
                    "description": "only raised alarms",
                    "schema": {"type": "boolean"},
                }
            ],
            "responses": {"200": _json({"type": "array", "items": _ref("Alarm")}, "alarms")},
        }
    },
    "/api/alarms/{id}/ack": {
        "post": {
            "summary": "Acknowledge an alarm",
            "operationId": "ackAlarm",
            "security": _SECURED,
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {"200": _json(_ref("Alarm"), "acknowledged"), "401": _ERR, "404": _ERR},
        }
    },
    "/api/counters": {
        "get": {
            "summary": "Bus counters per device",
            "operationId": "getCounters",
            "responses": {"200": _json(_ref("Counters"), "counters")},
        }
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "rackctl daemon API",
        "version": __version__,
        "description": "Read telemetry, history, alarms and counters of the rack controller "
        "boards; write registers with a bearer token. Prometheus metrics are at /metrics.",
    },
    "servers": [{"url": "/"}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "the api token from the daemon config ([http] token)",
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document (callers may mutate it)."""
    return copy.deepcopy(_DOCUMENT)
