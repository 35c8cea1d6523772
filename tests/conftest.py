"""Shared fixtures. Each real component has its own plugin module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.catalog",
    "tests.fixtures.seaweed",
    "tests.fixtures.origin",
    "tests.fixtures.static",
    "tests.fixtures.pki",
]
