from tests.fakes import s3_server  # noqa: F401  (fixture)
