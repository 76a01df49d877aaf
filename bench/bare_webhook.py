"""The bare endpoint of the ingestion benchmark: the same stack as ``tidings serve`` (FastAPI on
uvicorn), verifying the signature on the raw body and answering 200 — nothing stored.

    python -m bench.bare_webhook PORT APP_SECRET
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, HTTPException, Request

from tidings.channels.whatsapp.webhook import verify_signature


def make_app(secret: str) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare")
    async def bare(request: Request) -> dict[str, int]:
        raw = await request.body()
        if not verify_signature(secret, raw, request.headers.get("x-hub-signature-256")):
            raise HTTPException(401)
        return {"received": 1}

    return app


if __name__ == "__main__":
    uvicorn.run(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
