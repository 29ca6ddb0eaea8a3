pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.infra", "tests.fixtures.stack", "tests.fixtures.generation"]
