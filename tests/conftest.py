pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.infra", "tests.fixtures.vendor_catalog", "tests.fixtures.stack",
                  "tests.fixtures.generation", "tests.fixtures.gates"]
