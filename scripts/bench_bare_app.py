"""The ceiling the gateway is compared with: a bare FastAPI POST with a pydantic body.

`python -m scripts.bench_bare_app PORT` (started and stopped by `scripts/bench.py`).
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    notification_type: str
    user_id: str
    template_code: str
    variables: dict[str, str]


@app.post("/send", status_code=202)
async def send(body: Body) -> dict[str, str]:
    return {"status": "queued", "user_id": body.user_id}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
