"""A zero-dependency asyncio HTTP service that learns live from interactions.

Plain :func:`asyncio.start_server` with a tiny JSON-over-HTTP/1.1 handler (one
request per connection); the engine trains in its own thread, so the event loop
only ever awaits Futures (:meth:`Engine.train_step_async`,
:meth:`Engine.predict_async`).

Routes:

* ``POST /interactions`` -- body: an interaction as JSON (the fields of
  :meth:`InteractionData.to_dict`); trains one step and answers with its
  :class:`StepResult` (``step``, ``loss``, ``prediction`` made before the update,
  ``status``, ``reason``).
* ``GET /predict?action_type=click&user_id=u1[&timestamp=1700000000][&ctx.page=home]``
  -- the current probability (``{"prediction": 0.42}``); ``ctx.<key>`` parameters
  become string context values, ``timestamp`` defaults to now.
* ``GET /stats`` -- :meth:`Engine.stats` as JSON.
* ``GET /metrics`` -- Prometheus text, if ``prometheus-client`` is installed.

Run it and try it::

    python examples/asyncio_service.py --port 8080
    curl -s -X POST localhost:8080/interactions \\
        -d '{"action_type": "click", "timestamp": 1700000000, "user_id": "u1"}'
    curl -s 'localhost:8080/predict?action_type=click&user_id=u1'
    curl -s localhost:8080/stats

SIGINT/SIGTERM stop the server and close the engine, which trains every
interaction already accepted before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from livelearn import (
    Engine,
    EngineOverloaded,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    StepResult,
)

MAX_BODY = 1 << 20  # bytes
MAX_HEADER = 16 << 10
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """An error answered with ``status`` and a JSON ``{"error": message}`` body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def _json_number(value: float | None) -> float | None:
    """JSON has no NaN/inf: report them as null."""
    return None if value is None or not math.isfinite(value) else value


def result_to_json(result: StepResult) -> dict[str, Any]:
    """A :class:`StepResult` as a JSON-friendly dict."""
    prediction: float | list[float | None] | None
    if result.prediction is None or isinstance(result.prediction, float):
        prediction = _json_number(result.prediction)
    else:
        prediction = [_json_number(float(p)) for p in result.prediction]
    return {
        "step": result.step,
        "loss": _json_number(result.loss),
        "prediction": prediction,
        "status": str(result.status),
        "reason": result.reason,
    }


class Service:
    """The request handlers around one engine."""

    def __init__(self, engine: Engine, metrics: Callable[[], bytes] | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    async def handle(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request."""
        url = urlsplit(target)
        if url.path == "/interactions":
            _require(method, "POST")
            return _json(200, await self.train(body))
        if url.path == "/predict":
            _require(method, "GET")
            return _json(200, await self.predict(dict(parse_qsl(url.query))))
        if url.path == "/stats":
            _require(method, "GET")
            stats = self.engine.stats()._asdict()
            return _json(
                200, {k: _json_number(v) if isinstance(v, float) else v for k, v in stats.items()}
            )
        if url.path == "/metrics" and self.metrics is not None:
            _require(method, "GET")
            return 200, "text/plain; version=0.0.4", self.metrics()
        raise HttpError(404, f"no route {url.path!r}")

    async def train(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
        try:
            interaction = InteractionData.from_dict(payload)
            result = await self.engine.train_step_async(interaction)
        except InvalidInteraction as exc:
            raise HttpError(400, str(exc), field=exc.field) from None
        except EngineOverloaded as exc:
            raise HttpError(503, str(exc)) from None
        return result_to_json(result)

    async def predict(self, query: Mapping[str, str]) -> dict[str, Any]:
        context = {k[4:]: v for k, v in query.items() if k.startswith("ctx.")}
        try:
            timestamp = float(query.get("timestamp", time.time()))
            interaction = InteractionData(
                query.get("action_type", ""),
                timestamp,
                query.get("user_id", ""),
                context or None,
            )
        except (InvalidInteraction, ValueError) as exc:
            raise HttpError(400, str(exc)) from None
        prediction = await self.engine.predict_async(interaction)
        if isinstance(prediction, float):
            return {"prediction": _json_number(prediction)}
        return {"prediction": [_json_number(float(p)) for p in prediction]}

    async def on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one request, then close the connection."""
        try:
            status, content_type, body = await self._respond(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise HttpError(400, "request head too large") from None
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                raise HttpError(400, f"bad request line {lines[0]!r}")
            method, target, _ = parts
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY:
                raise HttpError(413, f"body larger than {MAX_BODY} bytes")
            body = await reader.readexactly(length) if length > 0 else b""
            return await self.handle(method, target, body)
        except HttpError as exc:
            return _json(exc.status, exc.body)
        except ValueError as exc:  # e.g. a malformed Content-Length
            return _json(400, {"error": str(exc)})
        except Exception as exc:  # an unexpected bug must still get an answer
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})


def _require(method: str, expected: str) -> None:
    if method != expected:
        raise HttpError(405, f"use {expected}")


def _json(status: int, payload: Mapping[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()


def _metrics_exporter(engine: Engine) -> Callable[[], bytes] | None:
    """``/metrics`` via livelearn.metrics if prometheus-client is installed."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from livelearn.metrics import register
    except ImportError:
        return None
    registry = CollectorRegistry()
    register(engine, registry)
    return lambda: generate_latest(registry)


async def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM); ``ready(host, port)`` is
    called once listening (``port=0`` picks a free port)."""
    service = Service(engine, _metrics_exporter(engine))
    stop = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)  # main thread on Unix only
    server = await asyncio.start_server(service.on_connection, host, port, limit=MAX_HEADER)
    async with server:
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        if ready is not None:
            ready(bound_host, bound_port)
        await stop.wait()
    engine.close()  # trains every accepted interaction


def build_engine() -> Engine:
    """The engine this example serves: hashed features, clicks and purchases as positives."""
    return Engine(
        hidden_layers=(16, 8),
        features=HashedFeatureEncoder(n_buckets=2**16),
        targets={"click": 1.0, "purchase": 1.0, "skip": 0.0},
        log_every=0,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = parser.parse_args(argv)

    def ready(host: str, port: int) -> None:
        print(f"listening on http://{host}:{port}", flush=True)

    engine = build_engine().initialize()
    asyncio.run(serve(engine, args.host, args.port, ready))
    print("stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
