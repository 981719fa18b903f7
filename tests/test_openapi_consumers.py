"""Issue 18, item 8 — docs/openapi.yaml for the people who consume the API: every operation has a
tag of a declared family, an example, and a documented error response (the Error envelope);
every example is valid against its own schema; security schemes are described. (Conformance of
the running app to the document is tests/test_foundation_openapi.py; the error-code and status
enums against the code's catalogues are Tests/PaymentsCoreTests.)"""

import copy

import jsonschema_rs
import pytest
import yaml

from harness.paths import REPO

SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
METHODS = {"get", "put", "post", "delete", "patch"}
OPERATIONS = [(method.upper(), path, op) for path, item in SPEC["paths"].items()
              for method, op in item.items() if method in METHODS]
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def json_schema(schema, depth=0):
    """An OpenAPI 3.0 schema as JSON Schema: references inlined, `nullable` as a null type."""
    assert depth < 20, "a reference cycle"
    schema = copy.deepcopy(resolve(schema))
    if schema.pop("nullable", False):
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    for key in ("properties",):
        if key in schema:
            schema[key] = {name: json_schema(value, depth + 1) for name, value in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = json_schema(schema[key], depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [json_schema(value, depth + 1) for value in schema[key]]
    schema.pop("example", None)
    return schema


def examples(op):
    """(where, example, schema) of every example an operation carries."""
    found = []
    for code, response in op["responses"].items():
        response = resolve(response)
        for media, body in (response.get("content") or {}).items():
            if "example" in body:
                found.append((f"{code} {media}", body["example"], body.get("schema", {})))
            for name, named in (body.get("examples") or {}).items():  # OpenAPI's named examples
                found.append((f"{code} {media} ({name})", named["value"], body.get("schema", {})))
        for name, header in (response.get("headers") or {}).items():
            header = resolve(header)
            if "example" in header:
                found.append((f"{code} header {name}", header["example"], header.get("schema", {})))
    for media, body in (op.get("requestBody", {}).get("content") or {}).items():
        if "example" in body:
            found.append((f"request {media}", body["example"], body.get("schema", {})))
    for parameter in op.get("parameters", []):
        parameter = resolve(parameter)
        if "example" in parameter:
            found.append((f"parameter {parameter['name']}", parameter["example"], parameter.get("schema", {})))
    return found


def test_every_family_tag_is_declared_and_described():
    declared = {tag["name"]: tag.get("description", "") for tag in SPEC["tags"]}
    assert all(declared.values()), declared
    used = {tag for _, _, op in OPERATIONS for tag in op.get("tags", [])}
    assert used == set(declared), (used, set(declared))


@pytest.mark.parametrize("method, path, op", OPERATIONS, ids=IDS)
def test_every_operation_has_a_tag_an_example_and_a_documented_error(method, path, op):
    declared = {tag["name"] for tag in SPEC["tags"]}
    assert len(op.get("tags", [])) == 1 and op["tags"][0] in declared, op.get("tags")

    successes = {code: resolve(r) for code, r in op["responses"].items() if code[0] in "23"}
    assert successes, "no success response"
    success_examples = [where for where, _, _ in examples(op) if where[0] in "23"]
    assert success_examples, "no example of a successful answer"
    if "application/json" in (op.get("requestBody", {}).get("content") or {}):
        assert any(where.startswith("request ") for where, _, _ in examples(op)), "no request example"

    errors = {code: resolve(r) for code, r in op["responses"].items() if code[0] in "45"}
    assert errors, "no documented error response"
    for code, response in errors.items():
        content = response["content"]
        # The API's errors are the envelope; the browser's onboarding redirects answer HTML pages.
        assert set(content) <= {"application/json", "text/html"}, (code, set(content))
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            assert resolve(schema) is SPEC["components"]["schemas"]["Error"], (code, "not the Error envelope")
    assert any("application/json" in r["content"] for r in errors.values()) or path.startswith(
        "/api/connect/onboarding/"), "no error envelope documented"


@pytest.mark.parametrize("method, path, op", OPERATIONS, ids=IDS)
def test_every_example_is_valid_against_its_schema(method, path, op):
    for where, example, schema in examples(op):
        if isinstance(example, str) and schema.get("type") != "string" and resolve(schema).get("type") is None:
            continue  # text/plain bodies (metrics) carry no schema of their own
        errors = [e.message for e in jsonschema_rs.validator_for(json_schema(schema)).iter_errors(example)]
        assert not errors, (where, errors, example)


def test_shared_error_responses_show_an_envelope_with_a_catalogued_code():
    codes = set(SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    envelope = json_schema(SPEC["components"]["schemas"]["Error"])
    for name, response in SPEC["components"]["responses"].items():
        example = response["content"]["application/json"]["example"]
        assert example["error"]["code"] in codes, (name, example)
        assert not list(jsonschema_rs.validator_for(envelope).iter_errors(example)), (name, example)


def test_the_example_check_can_fail():
    """A Payment example with a status outside the enum is refused by the same validation."""
    payment = SPEC["paths"]["/api/payments/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
    broken = {**payment["example"], "status": "paid"}
    assert list(jsonschema_rs.validator_for(json_schema(payment["schema"])).iter_errors(broken))


def test_typed_intent_and_payment_responses_and_security_schemes():
    schemas = SPEC["components"]["schemas"]
    create = SPEC["paths"]["/api/payments/create-intent"]["post"]["responses"]
    for code in ("200", "201"):
        assert create[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CreatedIntent"}
    intent = schemas["CreatedIntent"]
    assert {"payment_id", "payment_intent_id", "client_secret", "amount", "status"} <= set(intent["required"])
    assert intent["properties"]["status"]["enum"] == schemas["Payment"]["properties"]["status"]["enum"]
    assert set(schemas["Payment"]["required"]) == set(schemas["Payment"]["properties"])
    assert "enum" in schemas["Dispute"]["properties"]["status"]
    schemes = SPEC["components"]["securitySchemes"]
    assert all(scheme.get("description") for scheme in schemes.values()), schemes
    for method, path, op in OPERATIONS:
        for requirement in op.get("security", []):
            assert set(requirement) <= set(schemes), (method, path, requirement)
