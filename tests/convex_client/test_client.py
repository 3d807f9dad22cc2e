"""ConvexClient against a local HTTP server that plays Convex's part, answer by answer."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from convex_client import (
    ConvexAuthError,
    ConvexClient,
    ConvexFunctionError,
    ConvexRequestError,
    ConvexUnavailable,
)

KEY = "prod:happy-otter-123|secret-deploy-key-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"status": "success", "value": None})
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # drop the connection without answering


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


class FakeConvex:
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Convex serves

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.seen.append(Seen(self.path, dict(self.headers.items()), body, self.client_address[1]))
                reply = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.close:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up is part of these tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeConvex]:
    server = FakeConvex()
    yield server
    server.stop()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fake: FakeConvex, sleeps: Sleeps) -> Iterator[ConvexClient]:
    c = ConvexClient(fake.url, deploy_key=KEY, timeout_s=2, connect_timeout_s=1, sleep=sleeps)
    yield c
    c.close()


def success(value: Any) -> Reply:
    return Reply(body={"status": "success", "value": value, "logLines": []})


def test_query_sends_convex_request_and_returns_the_value(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(success({"total": 3, "byStatus": {"pending": 1}}))
    assert client.query("voiceCloneJobs:getStats", {"userId": "u1"}) == {"total": 3, "byStatus": {"pending": 1}}
    seen = fake.seen[0]
    assert seen.path == "/api/query"
    assert seen.body == {"path": "voiceCloneJobs:getStats", "args": {"userId": "u1"}, "format": "json"}
    assert seen.headers["Authorization"] == f"Convex {KEY}"
    assert seen.headers["Content-Type"] == "application/json"


def test_mutation_and_action_use_their_endpoints(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(success(1), success(2))
    assert client.mutation("m:f", {"a": 1}) == 1
    assert client.action("m:g") == 2
    assert [s.path for s in fake.seen] == ["/api/mutation", "/api/action"]
    assert fake.seen[1].body["args"] == {}


def test_no_key_sends_no_authorization(fake: FakeConvex) -> None:
    fake.script(success([]))
    with ConvexClient(fake.url) as anonymous:
        assert anonymous.query("voiceCloneJobs:getPendingJobs", {"limit": 10}) == []
    assert "Authorization" not in fake.seen[0].headers


@pytest.mark.parametrize("status", [200, 560])
def test_function_errors_carry_message_and_data_and_are_not_retried(
    fake: FakeConvex, client: ConvexClient, status: int
) -> None:
    data = {"kind": "StaleLease", "message": "job x is pending under another lease"}
    fake.script(Reply(status=status, body={"status": "error", "errorMessage": "Uncaught ConvexError", "errorData": data}))
    with pytest.raises(ConvexFunctionError) as caught:
        client.query("voiceCloneJobs:getJob", {"jobId": "x"})
    assert caught.value.data == data and caught.value.path == "voiceCloneJobs:getJob"
    assert caught.value.message == "Uncaught ConvexError"
    assert len(fake.seen) == 1


def test_bad_key_is_an_auth_error_that_never_shows_the_key(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(status=401, body={"code": "BadAdminKey", "message": "The provided admin key was invalid"}))
    with pytest.raises(ConvexAuthError) as caught:
        client.mutation("voiceCloneJobs:createJob", {})
    err = caught.value
    assert (err.status_code, err.code) == (401, "BadAdminKey")
    assert "CONVEX_DEPLOY_KEY" in str(err) and "admin key was invalid" in str(err)
    assert KEY not in str(err) and KEY not in repr(client) and "secret" not in repr(client)
    assert len(fake.seen) == 1


def test_other_4xx_is_a_request_error(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(status=400, body={"code": "BadJsonBody", "message": "no path"}))
    with pytest.raises(ConvexRequestError) as caught:
        client.query("x:y")
    assert caught.value.code == "BadJsonBody" and not isinstance(caught.value, ConvexAuthError)
    assert "HTTP 400 BadJsonBody: no path" in str(caught.value)


def test_queries_retry_5xx_with_growing_backoff(fake: FakeConvex, client: ConvexClient, sleeps: Sleeps) -> None:
    fake.script(Reply(status=502, body=b"bad gateway"), Reply(status=500, body={"code": "Internal", "message": "x"}),
                success("ok"))
    assert client.query("m:f") == "ok"
    assert len(fake.seen) == 3
    assert len(sleeps) == 2
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4  # base 0.2 s, doubling, jittered down


def test_retries_are_bounded(fake: FakeConvex, client: ConvexClient, sleeps: Sleeps) -> None:
    fake.script(Reply(status=503, body={"code": "Overloaded", "message": "busy"}))
    with pytest.raises(ConvexUnavailable) as caught:
        client.query("m:f")
    assert caught.value.attempts == 3 and len(fake.seen) == 3 and len(sleeps) == 2
    assert "HTTP 503 Overloaded: busy" in str(caught.value) and "after 3 attempts" in str(caught.value)


def test_mutations_are_not_repeated_when_they_may_have_run(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(status=500, body={"code": "Internal", "message": "boom"}), success("ran twice"))
    with pytest.raises(ConvexUnavailable) as caught:
        client.mutation("m:f")
    assert "not retried" in str(caught.value)
    assert len(fake.seen) == 1


def test_idempotent_mutations_are_repeated(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(status=500, body={"code": "Internal", "message": "boom"}), success("ok"))
    assert client.mutation("m:f", idempotent=True) == "ok"
    assert len(fake.seen) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_mutations_are_repeated_when_refused_unrun(
    fake: FakeConvex, client: ConvexClient, sleeps: Sleeps, status: int
) -> None:
    fake.script(Reply(status=status, body={"code": "TooBusy", "message": "later"}, headers={"Retry-After": "1"}),
                success("ok"))
    assert client.mutation("m:f") == "ok"
    assert len(fake.seen) == 2
    assert sleeps == [1.0]  # Retry-After is honoured (capped by backoff_max_s)


def test_unreachable_deployment_fails_after_bounded_attempts(sleeps: Sleeps) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    with ConvexClient(f"http://127.0.0.1:{port}", deploy_key=KEY, sleep=sleeps) as dead:
        with pytest.raises(ConvexUnavailable) as caught:
            dead.mutation("m:f")  # never sent, so safe to repeat even as a mutation
    assert caught.value.attempts == 3 and len(sleeps) == 2
    assert "ConnectError" in str(caught.value) and KEY not in str(caught.value)


def test_read_timeouts_retry_queries_but_not_mutations(fake: FakeConvex, sleeps: Sleeps) -> None:
    fake.script(Reply(delay_s=0.5))
    with ConvexClient(fake.url, timeout_s=0.1, sleep=sleeps) as slow:
        with pytest.raises(ConvexUnavailable) as caught:
            slow.query("m:f")
        assert caught.value.attempts == 3 and "ReadTimeout" in str(caught.value)
        fake.seen.clear()
        with pytest.raises(ConvexUnavailable) as caught:
            slow.mutation("m:f")
        assert caught.value.attempts == 1 and len(fake.seen) == 1


def test_dropped_connections_are_retried_for_queries(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(close=True), success("ok"))
    assert client.query("m:f") == "ok"


def test_the_deadline_stops_retrying(fake: FakeConvex, sleeps: Sleeps) -> None:
    fake.script(Reply(status=503, body={"code": "x", "message": "y"}, headers={"Retry-After": "5"}))
    with ConvexClient(fake.url, deadline_s=3, backoff_max_s=5, max_attempts=10, sleep=sleeps) as c:
        with pytest.raises(ConvexUnavailable):
            c.query("m:f")
    assert len(fake.seen) == 1 and sleeps == []


def test_unexpected_bodies_are_unavailable(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(Reply(status=200, body=b"<html>proxy error</html>"))
    with pytest.raises(ConvexUnavailable, match="not JSON"):
        client.mutation("m:f")
    fake.script(Reply(status=200, body={"what": "ever"}))
    with pytest.raises(ConvexUnavailable, match="unexpected body"):
        client.mutation("m:f")


def test_connections_are_reused(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(success(1))
    for _ in range(5):
        client.query("m:f")
    assert len({s.client_port for s in fake.seen}) == 1


def test_calls_from_many_threads_share_the_client(fake: FakeConvex, client: ConvexClient) -> None:
    fake.script(success("ok"))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(client.query("m:f"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["ok"] * 8


def test_retry_logs_never_show_the_key(fake: FakeConvex, client: ConvexClient, caplog: pytest.LogCaptureFixture) -> None:
    fake.script(Reply(status=503, body={"code": "x", "message": "y"}), success("ok"))
    with caplog.at_level(logging.DEBUG):
        client.query("m:f")
    assert "retrying" in caplog.text
    assert KEY not in caplog.text and "secret-deploy-key" not in caplog.text


def test_errors_survive_pickling() -> None:
    err = ConvexFunctionError("boom", path="m:f", data={"kind": "StaleLease"})
    back = pickle.loads(pickle.dumps(err))
    assert (back.message, back.path, back.data) == ("boom", "m:f", {"kind": "StaleLease"})
    unavailable = pickle.loads(pickle.dumps(ConvexUnavailable("down", path="m:f", attempts=3)))
    assert unavailable.attempts == 3


@pytest.mark.parametrize("url", ["", "convex.cloud", "ftp://x.convex.cloud", "https://"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="CONVEX_URL"):
        ConvexClient(url)
