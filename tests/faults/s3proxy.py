"""A loopback HTTP proxy in front of the real S3 server that can be told to fail.

Requests go through unchanged (the Host header too, so SigV4 signatures still
verify) unless a fault is set: answer a status with an S3 error body (403
AccessDenied, 409 ConditionalRequestConflict, 503 SlowDown), hang past the
client's timeouts, or stop listening altogether (`stop`/`start` on the same
port: connection refused, as when S3 is down). Function processes reach it
through AWS_ENDPOINT_URL like any S3 endpoint.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

S3_CODES = {403: "AccessDenied", 409: "ConditionalRequestConflict", 500: "InternalError", 503: "SlowDown"}


@dataclass
class Fault:
    """Answer `status` (or hang `hang` seconds) to requests of `method` (any if None) whose path
    contains `path` (any if None), `times` times (forever if None)."""

    status: int | None = None
    hang: float | None = None
    method: str | None = None
    path: str | None = None
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path is None or self.path in path)


class S3FaultProxy:
    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int, int]] = []  # (method, path, status answered, body bytes sent)
        self._lock = threading.Lock()
        self._released = threading.Event()  # set: hanging requests give up at once
        self._connections: set[socket.socket] = set()  # open client connections, cut by stop()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._released.clear()
        server = _QuietServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        """Stop listening and cut every open connection (kept-alive ones too): S3 is down."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def fail(self, **fault) -> Fault:
        with self._lock:
            self.faults.append(f := Fault(**fault))
        return f

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()
        self._released.set()
        self._released.clear()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A connection cut by `stop` (or by a client giving up) is what the faults are for."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _handler(proxy: S3FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._connections.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            # Noted before the client can have the answer: a test reading `seen` after a call finds it.
            proxy.seen.append((self.command, self.path, status, 0 if self.command == "HEAD" else len(body)))
            self.send_response(status)
            length = str(len(body))
            for name, value in headers:
                if name.lower() == "content-length" and self.command == "HEAD":
                    length = value  # a HEAD's length is the object's, with no body
                elif name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self) -> None:
            body = self._body()
            fault = proxy._fault_for(self.command, self.path)
            if fault is not None and fault.hang is not None:
                proxy._released.wait(fault.hang)
                self.close_connection = True
                return  # no answer at all: the client's read timeout decides
            if fault is not None and fault.status is not None:
                code = S3_CODES.get(fault.status, "Error")
                xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                       f"<Message>injected {fault.status}</Message></Error>").encode()
                self._answer(fault.status, xml, [("Content-Type", "application/xml")])
                return
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in ("transfer-encoding", "content-length"):
                        upstream.putheader(name, value)
                upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body)
                reply = upstream.getresponse()
                data = reply.read()
                self._answer(reply.status, data, reply.getheaders())
            finally:
                upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    return Handler
