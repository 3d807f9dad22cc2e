"""A local S3 server (moto's, in this process on a free port) for tests that need a bucket.

    with running_s3_server() as s3:
        s3.create_bucket("voices")
        storage = S3BlobStorage("voices", endpoint_url=s3.endpoint_url, ...)   # creds from s3.env()

Other processes (Ray workers) reach it over HTTP at `endpoint_url` with the credentials in
`env()`. moto keeps its state per process, so give each test its own bucket name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import boto3
import httpx
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


@dataclass
class S3Server:
    endpoint_url: str
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY

    def env(self) -> dict[str, str]:
        """Environment for a process that should use this server through boto3's usual chain."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": self.region,
        }

    def client(self, service: str = "s3", **credentials: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=credentials.get("aws_access_key_id", self.access_key_id),
            aws_secret_access_key=credentials.get("aws_secret_access_key", self.secret_access_key),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"voiceq-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def create_credentials(self, *, allow: str = "s3:*") -> tuple[str, str]:
        """An IAM user with an access key allowed `allow` on everything: real credentials for
        `checking_credentials()`."""
        iam = self.client("iam")
        user = f"voiceq-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": allow, "Resource": "*"}]}
        iam.put_user_policy(UserName=user, PolicyName="voiceq", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """Within this block the server checks every request's signature and permissions, like
        S3 does (by default moto accepts any credentials)."""
        previous = httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=b"0", timeout=10).json()
        try:
            yield
        finally:
            restore = previous.get("PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
            httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=str(restore).encode(), timeout=10)


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    # werkzeug logs every request of the server thread; keep test output for failures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
