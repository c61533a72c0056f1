"""Shared test fixtures. The emulator fixtures live in tests/emulator_fixtures.py."""

pytest_plugins = ["tests.emulator_fixtures"]
