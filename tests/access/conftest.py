from tests.views.conftest import browser, site  # noqa: F401  (the same site and browser as the view tests)
