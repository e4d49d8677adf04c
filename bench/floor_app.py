"""The framework floor for bench_online.py: FastAPI that parses the same body and answers a constant.

Run by the benchmark as `uvicorn floor_app:app --app-dir bench`; reads and writes nothing.
No endpoint in this framework can be faster than this one, so it is the limit to compare with.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
ANSWER = b'{"results":[],"model_version":"floor"}'


@app.post("/predict")
async def predict(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")
