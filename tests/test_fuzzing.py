"""schemathesis against the running service's own ``/api/openapi.json``, signed in with a static API token.

Every operation of the document gets schema-valid (``positive``) and schema-violating (``negative``) requests;
the operations on one file or one tus upload get schema-valid requests once more with the id of a real file or
upload (``existing``), so that ranges, conditions, checksums and offsets meet real objects instead of 404s.
What must hold for every answer: no 5xx, a documented status, a documented content type, a body and headers
that match the documented schema, a 401 without credentials, and every error as ``application/problem+json``.

Two of schemathesis' checks are left out: "schema-valid requests are accepted" and "schema-violating requests
are refused". The service refuses some schema-valid requests on purpose (a forged temporary token, a filename
with no usable character, a base64 string that does not decode), and multipart fields are text on the wire,
so a "number where a string belongs" cannot be told from a string. Both ways the answer must still be a
documented 4xx problem, which the checks above hold it to.

``FUZZ_EXAMPLES`` sets the examples per operation and pass (default 15: several hundred requests in under a
minute on 2 cores); a long exploratory run is ``FUZZ_EXAMPLES=300 pytest tests/test_fuzzing.py -s``.
"""

from __future__ import annotations

import os
import re
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .servers import TOKENS, Server
from .tus import create

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))  # per operation; more for a deeper look
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "response_headers_conformance", "ignored_auth", "unsupported_method", "missing_required_header")
PROBLEM_JSON = "application/problem+json"
PATH_PARAMETER = re.compile(r"\{([^}]+)\}")

# tus chunks are plain bytes, like application/octet-stream
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

pytestmark = pytest.mark.slow  # about a thousand generated requests


@schemathesis.check
def errors_are_problem_json(ctx, response, case):
    """Every 4xx and 5xx is RFC 9457 problem details with the answer's own status."""
    if response.status_code < 400:
        return None
    media = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media == PROBLEM_JSON, f"{case.method} {case.path} answered {response.status_code} as {media!r}"
    if case.method.upper() != "HEAD":
        body = response.json()
        assert body["status"] == response.status_code and body["title"] and body["detail"], body
    return True


@pytest.fixture(scope="module")
def api_schema(server: Server):
    config = schemathesis.Config.from_dict({
        "base-url": server.url,
        "auth": {"openapi": {"bearer": {"bearer": TOKENS["alice"]}}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    return schemathesis.openapi.from_url(server.url + "/api/openapi.json", config=config)


def real_objects(server: Server) -> Callable[[Any], dict[str, str] | None]:
    """Path parameters naming a fresh real object of alice's for an operation, or None when it names none."""
    client = server.client("alice")

    def for_operation(operation: Any) -> dict[str, str] | None:
        names = PATH_PARAMETER.findall(operation.path)
        if operation.method.upper() == "PUT" or len(names) != 1:
            return None  # PUT /api/files/{name} takes a new name, not an id
        if names[0] == "upload_id":
            return {"upload_id": create(client, 4096).rsplit("/", 1)[-1]}
        if names[0].endswith("file_id"):  # an image, so downloads also take the sniff-and-show-inline path
            png = b"\x89PNG\r\n\x1a\n" + os.urandom(4088)
            return {names[0]: client.put("/api/files/fuzzed.png", content=png).json()["id"]}
        return None

    return for_operation


PASSES = {"positive": GenerationMode.POSITIVE, "negative": GenerationMode.NEGATIVE, "existing": GenerationMode.POSITIVE}


@pytest.mark.parametrize("kind", PASSES)
def test_every_operation_answers_as_documented(server: Server, api_schema, kind: str) -> None:
    failures, unsatisfiable, statuses = [], [], Counter()
    existing = real_objects(server)
    for result in api_schema.get_all_operations():
        operation = result.ok()
        fixed = existing(operation) if kind == "existing" else None
        if kind == "existing" and fixed is None:
            continue

        @given(case=operation.as_strategy(generation_mode=PASSES[kind], path_parameters=fixed))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def fuzz(case):
            response = case.call_and_validate(additional_checks=[errors_are_problem_json])
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            if kind != "negative":
                raise
            unsatisfiable.append(operation.label)  # nothing about it can be made invalid (no parameters, no body)
        except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup is a BaseExceptionGroup
            failures.append(f"{operation.label}: {''.join(traceback.format_exception_only(error))}")
    print(f"\n{kind}: {statuses.total()} requests, statuses {dict(sorted(statuses.items()))}; "
          f"nothing to make invalid in: {', '.join(unsatisfiable) or 'none'}")
    assert statuses.total() > 0
    assert not failures, "\n\n".join(failures)
