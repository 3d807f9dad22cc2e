from tests.fakes import fake_convex, fake_convex_session  # noqa: F401  (fixtures)
