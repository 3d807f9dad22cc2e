"""Webhooks against hostile receivers and names: DNS rebinding, special-purpose ranges,
receivers that answer forever, and signatures that the `standardwebhooks` library accepts."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.receiver import webhook_receiver
from voiceq.errors import InvalidInput
from voiceq.webhooks import check_callback_url, deliver, deliver_once, is_forbidden_address


@pytest.mark.parametrize("address", [
    "100.64.0.1", "100.127.255.254",          # shared address space (carrier-grade NAT)
    "2002:7f00:1::1", "2002:a9fe:a9fe::1",    # 6to4 of 127.0.0.1 and 169.254.169.254
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2001:0:4136:e378::1",
    "169.254.169.254", "127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "::1", "fe80::1", "fd00::1",
    "0.0.0.0", "198.18.0.1", "192.0.0.170", "224.0.0.1", "240.0.0.1", "255.255.255.255",
])
def test_special_purpose_addresses_are_refused(address: str) -> None:
    assert is_forbidden_address(address)
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(InvalidInput):
        check_callback_url(f"http://{literal}/hook", allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert not is_forbidden_address(address)


@contextmanager
def fake_dns(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> Iterator[list[str]]:
    """`name` resolves to answers[0], then answers[1], ... (the last one repeats): a rebinding
    name. Everything else resolves as usual. Yields the answers given so far."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (name, name.encode()):
            address = answers[min(len(given), len(answers) - 1)]
            given.append(address)
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield given


def test_a_rebinding_name_never_reaches_the_private_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # First answer public (passes the check), every later one 127.0.0.1, where our receiver is.
    with webhook_receiver() as receiver, fake_dns(monkeypatch, "rebind.example", ["8.8.8.8", "127.0.0.1"]):
        port = receiver.url.split(":")[2].split("/")[0]
        outcome = asyncio.run(deliver(f"http://rebind.example:{port}/hooks", "j.completed", b"{}", secret="k",
                                      allow_private=False, max_attempts=2, base_delay_s=0.01, timeout_s=1.0))
        assert not outcome.delivered
        assert receiver.received == []  # the POST went to the address that was checked, or nowhere


def test_the_checked_address_is_used_with_the_original_host_header(monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_receiver() as receiver, fake_dns(monkeypatch, "hooks.example", ["127.0.0.1", "10.9.9.9"]) as given:
        port = receiver.url.split(":")[2].split("/")[0]
        attempt = asyncio.run(deliver_once(f"http://hooks.example:{port}/h?x=1", "j.completed", b"{}", secret="k",
                                           allow_private=True, deadline_s=5))
        assert attempt.delivered, attempt
        (got,) = receiver.received
        assert got.headers["host"] == f"hooks.example:{port}" and got.path == "/h?x=1"
        assert given == ["127.0.0.1"]  # resolved once, by the check, and that address was used


@contextmanager
def endless_receiver(*, trickle_s: float | None) -> Iterator[str]:
    """Answers 200 and then sends body bytes forever: a flood, or one byte every `trickle_s`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            while not stop.is_set():
                chunk = b"x" * (1 if trickle_s else 65536)
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                if trickle_s:
                    time.sleep(trickle_s)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


def test_an_endless_answer_is_not_read_to_the_end() -> None:
    with endless_receiver(trickle_s=None) as url:
        started = time.monotonic()
        attempt = asyncio.run(asyncio.wait_for(
            deliver_once(url, "j.completed", b"{}", secret="k", allow_private=True, deadline_s=10), timeout=8))
        assert attempt.delivered and time.monotonic() - started < 5


def test_a_trickling_answer_meets_the_attempt_deadline() -> None:
    # A byte every 0.2 s never trips a per-read timeout; the per-attempt deadline ends it.
    with endless_receiver(trickle_s=0.2) as url:
        started = time.monotonic()
        outcome = asyncio.run(asyncio.wait_for(
            deliver(url, "j.completed", b"{}", secret="k", allow_private=True, max_attempts=2,
                    base_delay_s=0.01, timeout_s=1.0), timeout=15))
        elapsed = time.monotonic() - started
        # Either the status line was enough (delivered at once) or the deadline stopped it.
        assert outcome.delivered or elapsed < 4
        assert elapsed < 4


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    with webhook_receiver() as receiver:
        outcome = asyncio.run(deliver(receiver.url, "msg_j1.completed", b'{"data":{"ok":true}}', secret=secret,
                                      allow_private=True, base_delay_s=0.01))
        assert outcome.delivered
        (got,) = receiver.received
    assert Webhook(secret).verify(got.body, got.headers) == {"data": {"ok": True}}


def test_a_plain_secret_verifies_as_whsec_of_its_bytes() -> None:
    with webhook_receiver() as receiver:
        asyncio.run(deliver(receiver.url, "j.failed", json.dumps({"a": 1}).encode(), secret="plain-text-secret",
                            allow_private=True))
        (got,) = receiver.received
    whsec = "whsec_" + base64.b64encode(b"plain-text-secret").decode()
    assert Webhook(whsec).verify(got.body, got.headers) == {"a": 1}


def self_signed(tmp_dir: Any, name: str) -> tuple[str, str]:
    """A certificate for `name` (and its key), as files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = f"{tmp_dir}/cert.pem", f"{tmp_dir}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_https_keeps_the_tls_name_while_connecting_to_the_checked_address(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    cert, key = self_signed(tmp_path, "hooks.example")
    seen: list[tuple[str, None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append((self.headers["host"], None))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []

    def remember(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    try:
        with fake_dns(monkeypatch, "hooks.example", ["127.0.0.1"]):
            async def go() -> Any:
                # Trusts only that certificate: the handshake succeeds only if the name checked is hooks.example.
                async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert), trust_env=False) as client:
                    return await deliver_once(f"https://hooks.example:{port}/h", "j.completed", b"{}", secret="k",
                                              allow_private=True, deadline_s=5, client=client)
            attempt = asyncio.run(go())
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.delivered, attempt
    assert names == ["hooks.example"] and seen[0][0] == f"hooks.example:{port}"
