import pytest

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.infra", "tests.fixtures.vendor_catalog", "tests.fixtures.stack",
                  "tests.fixtures.generation", "tests.fixtures.gates"]


# First: pytest-xdist's worker reads `xdist_group` in its own hook of the same name (it appends
# the group to the node id), and a conftest's hook would otherwise run after it, too late.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup` (`make test`), every test on the SQLite stack runs in
    one worker process and every test on the PostgreSQL stack in the other, so each process starts
    one stack (the session fixtures are per process); the rest is spread over both."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("stack") if callspec is not None else None
        if backend is not None:
            item.add_marker(pytest.mark.xdist_group(name=f"stack-{backend}"))
