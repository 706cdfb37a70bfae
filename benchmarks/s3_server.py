"""A real S3 API on loopback (moto's server mode) for the runs that read or write s3:// URIs: the tests' S3
scenarios and data_scaling's S3 rows. moto comes with the `test` extra."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass
class S3Server:
    endpoint: str  # host:port
    bucket: str
    env: dict  # AWS_* variables a client needs (dummy credentials, no instance-metadata lookups)

    def uri(self, prefix: str = "") -> str:
        """An s3:// URI pyarrow (and so Ray) resolves against this server."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{self.bucket}{path}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"


@contextlib.contextmanager
def moto_s3(bucket: str = "simmim-test"):
    """A real S3 API (moto's server mode) on a free loopback port, with `bucket` created. Callers set `env` in the
    environment of whatever talks to it (monkeypatch, or a subprocess env) and nowhere else."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        yield S3Server(f"{host}:{port}", bucket, env)
    finally:
        server.stop()
