from tests.fakes import convex_standin, convex_standin_server  # noqa: F401  (fixtures)
