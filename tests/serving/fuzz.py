"""A bounded schemathesis run over a live API's OpenAPI document, shared by the serving tests."""


def fuzz_openapi(url: str, path_prefix: str = "/", examples: int = 25) -> tuple[int, list[tuple[str, str]]]:
    """Valid and invalid generated requests (`examples` each) for every operation under `path_prefix`:
    the number of calls made, and each answer that was a 5xx or an undocumented status."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import status_code_conformance

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[tuple[str, str]] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(path_prefix):
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                nonlocal calls
                response = case.call(timeout=30)
                calls += 1
                try:
                    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
                except BaseException as failure:  # schemathesis raises a FailureGroup
                    failures.append((case.operation.label, f"{response.status_code}: {failure!r}"[:500]))

            try:
                run()
            except Unsatisfiable:  # no invalid request exists for an operation without inputs to vary
                if mode is not schemathesis.GenerationMode.NEGATIVE:
                    raise
    return calls, failures
