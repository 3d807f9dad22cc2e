"""The pydo wrapper against the fake DigitalOcean API: listings, errors, retries, rate limits."""

from __future__ import annotations

import logging
import socket

import pytest
from azure.core.exceptions import HttpResponseError

from droplets.api import CreateRequest, DigitalOceanApi, check_endpoint
from droplets.errors import DigitalOceanError
from droplets.retries import RetryPolicy
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, max_wait_s=5.0,
                   reserve=0)
LIST = "GET /v2/droplets"
CREATE = "POST /v2/droplets"


def request(*names: str, size: str = "s-2vcpu-4gb", tags: tuple[str, ...] = ("mine",)
            ) -> CreateRequest:
    return CreateRequest(names=names, region="atl1", size=size, image="ubuntu-24-04-x64",
                         tags=tags)


def test_listing_finds_gpu_droplets_which_only_type_gpus_shows(
    fake: FakeDigitalOcean, api: DigitalOceanApi
) -> None:
    cpu = api.create_droplets(request("cpu-1"))[0]
    gpu = api.create_droplets(request("gpu-1", size="gpu-mi300x1-192gb"))[0]
    fake.add_foreign_droplet("someone-elses-gpu", size="gpu-h100x1-80gb")
    fake.add_foreign_droplet("someone-elses-cpu")

    found = {d.id for d in api.list_droplets(tag="mine")}
    assert found == {cpu.id, gpu.id}
    everything = {d.id for d in api.list_droplets()}
    assert everything == {d["id"] for d in fake.live_droplets()}

    queries = [r.query for r in fake.requests_to(LIST)]
    assert queries[1]["type"] == "gpus" and "tag_name" not in queries[1]
    assert queries[0]["tag_name"] == "mine"


def test_pagination_follows_next_links(api: DigitalOceanApi) -> None:
    with FakeDigitalOcean(max_per_page=2) as small_pages:
        paged = DigitalOceanApi(TOKEN, endpoint=small_pages.endpoint, retry=FAST)
        try:
            made = paged.create_droplets(request(*[f"n-{i}" for i in range(7)]))
            made += paged.create_droplets(
                request(*[f"g-{i}" for i in range(3)], size="gpu-l40sx1-48gb"))
            for i in range(3):
                small_pages.add_foreign_droplet(f"foreign-{i}")
            listed = paged.list_droplets(tag="mine")
            pages = [r.query.get("page") for r in small_pages.requests_to(LIST)]
        finally:
            paged.close()
    assert sorted(d.id for d in listed) == sorted(d.id for d in made)
    assert pages == ["1", "2", "3", "4", "1", "2"]  # 7 tagged CPU droplets, 3 GPU droplets


def test_429_with_retry_after_waits_that_long(fake: FakeDigitalOcean, api: DigitalOceanApi) -> None:
    fake.fail_next(LIST, 429, retry_after="1")
    assert api.list_droplets(tag="mine") == []
    first, second = fake.requests_to(LIST)[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95


def test_429_without_retry_after_backs_off_and_retries(
    fake: FakeDigitalOcean, api: DigitalOceanApi
) -> None:
    fake.fail_next(LIST, 429, count=2)
    assert api.list_droplets(tag="mine") == []
    assert [r.status for r in fake.requests_to(LIST)][:3] == [429, 429, 200]


def test_5xx_is_retried_then_reported_with_do_s_message(
    fake: FakeDigitalOcean, api: DigitalOceanApi
) -> None:
    droplet = api.create_droplets(request("a"))[0]
    fake.fail_next("GET /v2/droplets/{id}", 503, count=2)
    assert api.get_droplet(droplet.id) is not None

    fake.fail_next("GET /v2/droplets/{id}", 500, count=10)
    with pytest.raises(DigitalOceanError) as caught:
        api.get_droplet(droplet.id)
    assert caught.value.status_code == 500
    assert caught.value.error_id == "server_error"
    assert "unable to give you a response" in caught.value.message
    assert isinstance(caught.value.__cause__, HttpResponseError)
    assert len(fake.requests_to("GET /v2/droplets/{id}")) == 2 + 1 + 4


def test_get_and_destroy_treat_404_as_gone(fake: FakeDigitalOcean, api: DigitalOceanApi) -> None:
    droplet = api.create_droplets(request("a"))[0]
    assert api.destroy_droplet(droplet.id) is True
    assert api.destroy_droplet(droplet.id) is False
    assert api.get_droplet(droplet.id) is None
    assert fake.droplet(droplet.id) is None


def test_destroy_retries_through_5xx(fake: FakeDigitalOcean, api: DigitalOceanApi) -> None:
    droplet = api.create_droplets(request("a"))[0]
    fake.fail_next("DELETE /v2/droplets/{id}", 502, count=2)
    assert api.destroy_droplet(droplet.id) is True
    assert fake.droplet(droplet.id) is None


def test_create_is_resent_after_429_only(fake: FakeDigitalOcean, api: DigitalOceanApi) -> None:
    fake.fail_next(CREATE, 429, retry_after="0")
    made = api.create_droplets(request("a", "b"))
    assert [d.name for d in made] == ["a", "b"]
    assert [r.status for r in fake.requests_to(CREATE)] == [429, 202]
    assert len(fake.live_droplets()) == 2


def test_create_5xx_is_not_resent_and_reports_an_unknown_outcome(
    fake: FakeDigitalOcean, api: DigitalOceanApi
) -> None:
    fake.fail_next(CREATE, 500, commit=True)
    with pytest.raises(DigitalOceanError) as caught:
        api.create_droplets(request("a"))
    assert caught.value.outcome_unknown and caught.value.status_code == 500
    assert len(fake.requests_to(CREATE)) == 1
    assert [d["name"] for d in fake.live_droplets()] == ["a"]  # it did happen


def test_create_timeout_reports_an_unknown_outcome(fake: FakeDigitalOcean) -> None:
    impatient = DigitalOceanApi(TOKEN, endpoint=fake.endpoint, retry=FAST, create_timeout_s=0.5)
    fake.delay_reply(CREATE, 1.5)
    try:
        with pytest.raises(DigitalOceanError) as caught:
            impatient.create_droplets(request("slow"))
    finally:
        impatient.close()
    assert caught.value.outcome_unknown and caught.value.status_code is None
    assert len(fake.requests_to(CREATE)) == 1


def test_422_becomes_a_domain_error_with_do_s_words(api: DigitalOceanApi) -> None:
    with pytest.raises(DigitalOceanError) as caught:
        api.create_droplets(request("a", size="gpu-nonexistent"))
    err = caught.value
    assert (err.status_code, err.error_id) == (422, "unprocessable_entity")
    assert "invalid size" in str(err)
    assert not err.outcome_unknown


def test_unauthorized_is_not_retried(fake: FakeDigitalOcean) -> None:
    wrong = DigitalOceanApi("not-the-token", endpoint=fake.endpoint, retry=FAST)
    try:
        with pytest.raises(DigitalOceanError) as caught:
            wrong.list_droplets()
    finally:
        wrong.close()
    assert caught.value.status_code == 401
    assert len(fake.requests) == 1


def test_pacing_keeps_under_the_rate_limit() -> None:
    with FakeDigitalOcean(rate_limit=6, rate_window_s=1.0) as limited:
        paced = DigitalOceanApi(
            TOKEN, endpoint=limited.endpoint,
            retry=RetryPolicy(max_attempts=1, max_wait_s=5.0, reserve=2),
        )
        try:
            for _ in range(4):
                paced.list_droplets(tag="mine")  # two requests each
        finally:
            paced.close()
        statuses = [r.status for r in limited.requests]
    assert len(statuses) == 8
    assert set(statuses) == {200}, "the client ran into the limit instead of pacing"


def test_an_exhausted_hourly_budget_fails_fast_without_sending() -> None:
    with FakeDigitalOcean(rate_limit=3) as limited:
        client = DigitalOceanApi(TOKEN, endpoint=limited.endpoint,
                                 retry=RetryPolicy(max_wait_s=5.0, reserve=0))
        try:
            client.list_droplets()  # 2 requests
            client.get_droplet(1)  # the 3rd: nothing remains, reset an hour away
            with pytest.raises(DigitalOceanError) as caught:
                client.list_droplets()
        finally:
            client.close()
        sent = len(limited.requests)
    assert caught.value.status_code == 429
    assert "resets in" in caught.value.message
    assert sent == 3


def test_connection_failures_are_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = DigitalOceanApi(TOKEN, endpoint=f"http://127.0.0.1:{port}", retry=FAST)
    try:
        with pytest.raises(DigitalOceanError) as caught:
            client.list_droplets()
    finally:
        client.close()
    assert caught.value.status_code is None
    assert "4 attempt" in caught.value.message


def test_the_token_never_reaches_logs_errors_or_reprs(
    fake: FakeDigitalOcean, api: DigitalOceanApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next(LIST, 503, count=2)
    fake.fail_next("GET /v2/droplets/{id}", 500, count=10)
    api.list_droplets()
    with pytest.raises(DigitalOceanError) as caught:
        api.get_droplet(5)
    assert caplog.records, "expected retry warnings to be logged"
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert TOKEN not in repr(api)


def test_plain_http_is_for_loopback_only() -> None:
    assert check_endpoint("https://api.digitalocean.com") is False
    assert check_endpoint("http://127.0.0.1:8080") is True
    with pytest.raises(ValueError):
        check_endpoint("http://api.digitalocean.com")
    with pytest.raises(ValueError):
        DigitalOceanApi(TOKEN, endpoint="http://10.0.0.5:80")
    with pytest.raises(ValueError):
        DigitalOceanApi("", endpoint="https://api.digitalocean.com")


def test_create_request_limits() -> None:
    with pytest.raises(ValueError):
        request(*[f"n{i}" for i in range(11)])
    with pytest.raises(ValueError):
        CreateRequest(names=(), region="atl1", size="s", image="i", tags=())
