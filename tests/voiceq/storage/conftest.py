from tests.fakes import fake_s3  # noqa: F401  (fixture)
