"""A real uvicorn server on a loopback port, for tests that must go through HTTP; and a raw
chunked upload that watches for the server's answer while it is still sending (what an
HTTP client library cannot do: it sends the whole body before it reads)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from fastapi import FastAPI

from tastemaker.serve.app import create_app
from tastemaker.serve.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(settings: Settings, app: FastAPI | None = None) -> Iterator[httpx.Client]:
    """Serve ``settings`` on 127.0.0.1 in a thread; yield a client bound to it.

    ``app``: one made with ``create_app(settings)`` beforehand, for a test that must reach
    the running service (``app.state.service``) or its metrics (``app.state.metrics``)."""
    port = free_port()
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    server = uvicorn.Server(uvicorn.Config(app or create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Upload:
    """What :func:`chunked_upload` saw."""

    status: int | None  # of the server's response; None when none came
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    sent_before_response: int = 0  # body bytes sent when the response was first readable
    sent: int = 0  # body bytes sent in all
    seconds: float = 0.0  # from the request line to the response (or to giving up)


def chunked_upload(
    base_url: str | httpx.URL,
    path: str,
    chunks: Iterable[bytes],
    headers: dict[str, str] | None = None,
    *,
    finish: bool = False,
    wait: float = 10.0,
) -> Upload:
    """POST ``chunks`` to ``path`` with ``Transfer-Encoding: chunked`` and no Content-Length,
    checking after every chunk whether the server has answered.

    Without ``finish`` it stops sending at the first sign of an answer (or when ``chunks``
    run out, without the closing chunk) and waits up to ``wait`` seconds for the response:
    a server that reads the whole body before answering never answers an unfinished one.
    With ``finish`` it sends every chunk and the closing one whatever the server said, as a
    client that ignores an early refusal would (the chunks come from an iterator, so the
    sender's own memory stays flat however large the body)."""
    url = httpx.URL(str(base_url))
    head = [f"POST {path} HTTP/1.1", f"Host: {url.host}:{url.port}", "Transfer-Encoding: chunked",
            "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    result = Upload(status=None)
    started = time.perf_counter()
    with socket.create_connection((url.host, url.port), timeout=wait) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answered = False
        try:
            for chunk in chunks:
                if not answered and select.select([sock], [], [], 0)[0]:
                    answered = True
                    result.sent_before_response = result.sent
                    if not finish:
                        break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                result.sent += len(chunk)
            if finish:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection on us: its answer may still be readable
        if not answered:
            result.sent_before_response = result.sent
        _read_response(sock, result, wait)
    result.seconds = time.perf_counter() - started
    return result


def _read_response(sock: socket.socket, result: Upload, wait: float) -> None:
    data = b""
    deadline = time.monotonic() + wait
    while b"\r\n\r\n" not in data or len(data) < _response_length(data):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            return  # no (complete) answer in time
        try:
            more = sock.recv(65536)
        except OSError:
            return
        if not more:
            break
        data += more
    if b"\r\n\r\n" not in data:
        return
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    result.status = int(lines[0].split()[1])
    result.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    result.body = body[: int(result.headers.get("content-length", len(body)))]


def _response_length(data: bytes) -> int:
    """Bytes of a response with a Content-Length (headers included); 0 until the headers are in."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        return 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value.strip())
    return len(data)
