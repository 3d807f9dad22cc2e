"""Webhook signing, verification, address fencing and delivery with retries, against a real
local HTTP receiver."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.receiver import webhook_receiver
from voiceq.errors import InvalidInput
from voiceq.webhooks import check_callback_url, deliver, sign, verify


def test_signatures_verify_only_with_the_right_secret_body_and_time() -> None:
    sig = sign("s3cret", "job.completed", 1_700_000_000, b'{"a":1}')
    headers = {"webhook-id": "job.completed", "webhook-timestamp": "1700000000", "webhook-signature": sig}
    assert verify("s3cret", headers, b'{"a":1}', now=1_700_000_010)
    assert not verify("other", headers, b'{"a":1}', now=1_700_000_010)
    assert not verify("s3cret", headers, b'{"a":2}', now=1_700_000_010)
    assert not verify("s3cret", headers, b'{"a":1}', now=1_700_009_999)  # replayed much later


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.0.0.5/x", "http://[::1]/x", "http://localhost:9/x",
                                 "http://169.254.169.254/latest/meta-data", "ftp://example.com/x"])
def test_callbacks_to_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_callback_url(url, allow_private=False)


def test_public_callbacks_are_accepted() -> None:
    assert check_callback_url("https://hooks.example.com/voiceq", allow_private=False)


def test_delivery_retries_past_failures_and_signs_each_attempt() -> None:
    with webhook_receiver() as receiver:
        receiver.fail_next = 2
        outcome = asyncio.run(deliver(receiver.url, "j1.completed", b'{"ok":true}', secret="k",
                                      allow_private=True, base_delay_s=0.01))
        assert outcome.delivered and outcome.attempts == 3
        (got,) = receiver.received
        assert json.loads(got.body) == {"ok": True}
        assert verify("k", got.headers, got.body)


def test_delivery_gives_up_and_refuses_private_hosts_by_resolution() -> None:
    with webhook_receiver() as receiver:
        receiver.fail_next = 10
        outcome = asyncio.run(deliver(receiver.url, "j", b"{}", secret="k", allow_private=True,
                                      max_attempts=3, base_delay_s=0.01))
        assert not outcome.delivered and outcome.attempts == 3 and outcome.status_code == 503
        fenced = asyncio.run(deliver(receiver.url.replace("127.0.0.1", "localhost"), "j", b"{}", secret="k",
                                     allow_private=False))
        assert not fenced.delivered and "private" in (fenced.error or "")
        assert receiver.received == []
