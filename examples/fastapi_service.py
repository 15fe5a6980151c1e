"""A FastAPI service whose uvicorn workers all learn and answer from ONE model.

Every worker process builds ``Engine(..., share=SHARE)``: the model lives in
shared memory (see ``docs/sharing.md``), so whichever worker the load balancer
picks, a user gets the same answer, and every interaction trains the one model.
Install the ``service`` extra (``pip install "livelearn[service]"``) and run::

    LIVELEARN_SHARE=recs uvicorn examples.fastapi_service:app --workers 4 --port 8000
    curl -s -X POST localhost:8000/interactions \\
        -H 'content-type: application/json' \\
        -d '{"action_type": "click", "timestamp": 1700000000, "user_id": "u1"}'
    curl -s 'localhost:8000/predict?user_id=u1'
    curl -s localhost:8000/stats
    curl -s localhost:8000/metrics

Routes:

* ``POST /interactions`` -- an interaction as JSON (the fields of
  :meth:`InteractionData.to_dict`); trains one step, answers its ``StepResult``.
* ``GET /predict?user_id=u1[&action_type=click][&timestamp=...][&ctx.page=home]``
  -- ``{"prediction": p, "pid": ..., "model_version": ...}``.
* ``GET /stats`` -- this worker's :meth:`Engine.stats` (its own counts and the
  shared model's ``model_steps``/``model_version``) and its pid.
* ``GET /metrics`` -- Prometheus text of this worker's engine (needs
  ``prometheus-client``).

Stopping uvicorn closes every worker's engine: each trains what it accepted;
the last one removes the shared segment.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse

from livelearn import Engine, InteractionData
from livelearn.errors import InvalidInteraction

SHARE = os.environ.get("LIVELEARN_SHARE", "livelearn-service")
TARGETS = {"click": 1.0, "purchase": 1.0, "skip": 0.0}


def build_engine() -> Engine:
    """This worker's engine on the shared model."""
    return Engine(targets=TARGETS, share=SHARE, log_every=0).initialize()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = build_engine()
    app.state.engine = engine
    app.state.metrics = _metrics_exporter(engine)
    try:
        yield
    finally:
        engine.close()


app = FastAPI(title="livelearn shared-model service", lifespan=lifespan)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@app.post("/interactions")
async def interactions(request: Request) -> dict[str, Any]:
    try:
        event = InteractionData.from_dict(await request.json())
    except (InvalidInteraction, ValueError, TypeError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    result = await _engine(request).train_step_async(event)
    return {
        "step": result.step,
        "loss": result.loss,
        "prediction": result.prediction,
        "status": result.status.value,
        "reason": result.reason,
        "pid": os.getpid(),
    }


@app.get("/predict")
async def predict(
    request: Request, user_id: str, action_type: str = "click", timestamp: float | None = None
) -> dict[str, Any]:
    context = {k[4:]: v for k, v in request.query_params.items() if k.startswith("ctx.")}
    try:
        event = InteractionData(
            action_type, time.time() if timestamp is None else timestamp, user_id, context=context
        )
    except InvalidInteraction as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    engine = _engine(request)
    value = await engine.predict_async(event)
    return {
        "prediction": float(value) if isinstance(value, float) else [float(v) for v in value],
        "pid": os.getpid(),
        "model_version": engine.network.version,
    }


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    engine = _engine(request)
    return {**engine.stats()._asdict(), "pid": os.getpid(), "share": SHARE}


@app.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    exporter = request.app.state.metrics
    if exporter is None:
        raise HTTPException(status_code=404, detail="prometheus-client is not installed")
    return PlainTextResponse(exporter().decode(), media_type="text/plain; version=0.0.4")


def _metrics_exporter(engine: Engine) -> Any:
    """``/metrics`` via livelearn.metrics if prometheus-client is installed."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from livelearn.metrics import register
    except ImportError:
        return None
    registry = CollectorRegistry()
    register(engine, registry)
    return lambda: generate_latest(registry)
