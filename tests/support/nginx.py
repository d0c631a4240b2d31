"""Debian's nginx in front of a gateway, running `deploy/nginx/ironstar.conf` as shipped.

Only the deployment-specific lines are replaced (listen ports, the upstream address, the
certificate paths); everything else — locations, timeouts, headers, the retry stanza — is
the file we ship. Without nginx (or openssl) the tests skip with the reason; under CI
(CI=true) they fail, because `.ci/run` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ironstar.natsserver import free_port
from tests.support.stack import Stack
from tests.support.waiting import until

NGINX = Path(os.environ.get("IRONSTAR_NGINX", "/usr/sbin/nginx"))
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "ironstar.conf"


def require(program: Path | None, name: str) -> Path:
    """`program`, or skip (fail under CI) saying how to install it."""
    if program is not None and program.exists():
        return program
    reason = f"no {name} on this machine: apt-get install -y {name} (CI installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the nginx tests must run in CI, but {reason}")
    pytest.skip(reason)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost (one day, P-256)."""
    openssl = require(Path(shutil.which("openssl") or "/usr/bin/openssl"), "openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [str(openssl), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def render(gateway_port: int, https_port: int, http_port: int, redirect_port: int,
           cert: Path, key: Path) -> str:  # fmt: skip
    """The shipped server blocks with this test's ports and files.

    The TLS server also listens on `http_port` without TLS (HTTP/1.1 only): the same
    locations, for the tests of browsers limited to six connections per origin.
    """
    text = SHIPPED.read_text()
    swaps = [
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{gateway_port};"),
        (r"listen 80;\n\s*listen \[::\]:80;", f"listen 127.0.0.1:{redirect_port};"),
        (
            r"listen 443 ssl http2;\n\s*listen \[::\]:443 ssl http2;",
            f"listen 127.0.0.1:{https_port} ssl http2;\n    listen 127.0.0.1:{http_port};",
        ),
        (r"/etc/ssl/certs/ironstar\.pem", str(cert)),
        (r"/etc/ssl/private/ironstar\.key", str(key)),
    ]
    for pattern, replacement in swaps:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"deploy/nginx/ironstar.conf no longer has {pattern!r}"
    return text


class Nginx:
    """nginx in the foreground on free loopback ports, its files in `directory`."""

    def __init__(self, directory: Path, gateway_port: int) -> None:
        self.binary = require(NGINX, "nginx")
        self.directory = directory
        self.cert, self.key = self_signed(directory)
        self.https_port, self.http_port, self.redirect_port = free_port(), free_port(), free_port()
        self.gateway_port = gateway_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def https(self) -> str:
        """The base URL of nginx's TLS (HTTP/1.1 and HTTP/2) listener."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        """The base URL of nginx's plain HTTP listener."""
        return f"http://127.0.0.1:{self.http_port}"

    def _config(self) -> Path:
        d = self.directory
        site = d / "ironstar.conf"
        site.write_text(
            render(self.gateway_port, self.https_port, self.http_port, self.redirect_port,
                   self.cert, self.key)
        )  # fmt: skip
        temp = "\n".join(
            f"  {kind}_temp_path {d / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                           "uwsgi", "scgi")
        )  # fmt: skip
        user = "user root;\n" if os.geteuid() == 0 else ""
        main = d / "nginx.conf"
        main.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {d / 'nginx.pid'};\n"
            f"error_log {d / 'error.log'} info;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n  access_log {d / 'access.log'};\n{temp}\n  include {site};\n}}\n"
        )
        return main

    def start(self) -> Nginx:
        """Write the configuration and start nginx; ready once its HTTP port accepts
        (15 s), stopped again if it never does."""
        config = self._config()
        log = self.directory / "nginx.out"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "-p", str(self.directory),
                 "-e", str(self.directory / "error.log"), "-c", str(config)],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        process = self.process

        def listening() -> bool:
            assert process.poll() is None, f"nginx exited: {self.log()}"
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
            except OSError:
                return False
            return True

        try:
            until(listening, 15, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        """The last 2,000 characters of nginx's output and of its error log."""
        texts = [(self.directory / name) for name in ("nginx.out", "error.log")]
        return "\n".join(p.read_text()[-2000:] for p in texts if p.exists())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; nothing when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # fast: open feeds are cut, not awaited
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def behind_nginx(env: dict[str, str], workdir: Path) -> Iterator[tuple[Stack, Nginx]]:
    """writer, projector, a gateway that trusts 127.0.0.1 as its proxy, and nginx before it."""
    stack = Stack({**env, "IRONSTAR_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}, workdir)
    proxy: Nginx | None = None
    try:
        (workdir / "nginx").mkdir()
        proxy = Nginx(workdir / "nginx", int(stack.env["IRONSTAR_GATEWAY_PORT"])).start()
        yield stack, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        stack.stop()
