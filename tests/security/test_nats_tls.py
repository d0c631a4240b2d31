"""Services reach NATS over TLS with the CA they are given, and refuse a server they cannot
verify."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import bus
from common.errors import Unavailable
from common.settings import NatsSettings
from ironstar.natsserver import NatsServer, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, Path]]:
    pki = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=ironstar-test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=pki)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=pki)  # fmt: skip
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
             cwd=pki)  # fmt: skip
    tls = f'tls {{\n  cert_file: "{pki / "server.pem"}"\n  key_file: "{pki / "server.key"}"\n}}\n'
    server = NatsServer(pki / "nats", free_port(), extra_config=tls)
    server.start(log=pki / "nats-server.log")
    yield server, pki
    server.stop()


async def test_service_connects_over_tls_with_the_configured_ca(
    tls_server: tuple[NatsServer, Path],
) -> None:
    server, pki = tls_server
    settings = NatsSettings(url=f"tls://127.0.0.1:{server.port}", tls_ca_file=str(pki / "ca.pem"))
    nc = await bus.connect(settings, name="tls-test", wait_s=5)
    try:
        sub = await nc.subscribe("tls.check")
        await nc.publish("tls.check", b"over tls")
        assert (await sub.next_msg(timeout=2)).data == b"over tls"
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
    finally:
        await nc.close()


async def test_service_refuses_a_server_it_cannot_verify(
    tls_server: tuple[NatsServer, Path],
) -> None:
    server, _ = tls_server
    unverified = NatsSettings(url=f"tls://127.0.0.1:{server.port}")  # system CAs only
    with pytest.raises(Unavailable, match="cannot reach NATS"):
        await bus.connect(unverified, name="tls-test", wait_s=1)
