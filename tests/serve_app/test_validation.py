"""Pure checks of what clients send, shared by the job and voice listings."""

from __future__ import annotations

import pytest

from serve_app.validation import check_limit
from voiceq.errors import InvalidInput


def test_a_listing_limit_defaults_and_is_bounded() -> None:
    assert check_limit(None, default=50, maximum=500) == 50
    assert check_limit("500", default=50, maximum=500) == 500


@pytest.mark.parametrize("raw, message", [("-1", "between 1 and 500"), ("0", "between 1 and 500"),
                                          ("501", "between 1 and 500"), ("ten", "an integer"), ("", "an integer")])
def test_a_bad_limit_is_refused_naming_the_field(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_limit(raw, default=50, maximum=500)
    assert refused.value.field == "limit" and message in refused.value.message
