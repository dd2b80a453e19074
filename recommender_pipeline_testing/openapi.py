"""Confluent's OpenAPI specifications, to validate requests and responses by JSON pointer.

The spec files are vendored in `confluent_openapi/` beside this module (from Confluent's
ccloud-sdk-go-v2, Apache-2.0: see its SOURCE.txt and LICENSE), so a clone tests on its own;
CCLOUD_OPENAPI_DIR points elsewhere, e.g. at newer specs.
"""

import os
from pathlib import Path

import requests
import yaml
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(os.environ.get("CCLOUD_OPENAPI_DIR", Path(__file__).resolve().parent / "confluent_openapi"))
SPEC_FILES = {
    "org": "org-v2-openapi.yaml",
    "cmk": "cmk-v2-openapi.yaml",
    "iam": "apikeys-v2-openapi.yaml",
    "metrics": "metrics-v2-openapi.yaml",
}


class Specs:
    """Confluent's OpenAPI files, validating instances against any schema in them by JSON pointer."""

    def __init__(self, directory: Path):
        registry = Registry()
        for name, filename in SPEC_FILES.items():
            document = yaml.load((directory / filename).read_text(), Loader=yaml.CSafeLoader)
            registry = registry.with_resource(f"urn:{name}", Resource.from_contents(document, DRAFT4))
        self.registry = registry

    def validate(self, api: str, pointer: str, instance: object, *, write: bool = False) -> None:
        cls = OAS30WriteValidator if write else OAS30ReadValidator
        validator = cls({"$ref": f"urn:{api}#{pointer}"}, registry=self.registry, format_checker=cls.FORMAT_CHECKER)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]
        assert not errors, f"{api}{pointer}: {errors}"

    def response(self, api: str, path: str, method: str, status: int, instance: object) -> None:
        escaped = path.replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
        self.validate(api, f"/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema", instance)

    def failure(self, api: str, response: requests.Response, status: int) -> dict:
        """Asserts a control-plane error in Confluent's shape and returns its first error."""
        assert response.status_code == status, response.text
        body = response.json()
        self.validate(api, "/components/schemas/Failure", body)
        error = body["errors"][0]
        assert error["status"] == str(status) and error["id"] and error["code"] and error["detail"]
        return error

    def metrics_error(self, response: requests.Response, status: int) -> dict:
        assert response.status_code == status, response.text
        body = response.json()
        self.validate("metrics", "/components/schemas/ErrorResponse", body)
        error = body["errors"][0]
        assert error["status"] == str(status) and error["detail"]
        return error
