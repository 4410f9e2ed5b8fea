"""The risk register's tests use the exception engine's people and the views' site."""

from tests.exceptions.test_engine import people
from tests.views.conftest import site

__all__ = ["people", "site"]  # fixtures, found by pytest under these names
