"""Azure's routing rules for a managed online endpoint: the traffic split, the header, the mirror.

A request without the `azureml-model-deployment` header goes to a deployment drawn at random by
the traffic weights (a weighted random choice per request, the usual reading of Azure's "load
balances by percentage"); with the header it goes to that deployment whatever its weight. An
unknown name, or no deployment above 0 and no header, is a 404 (`RouteError`). A share of the
header-less requests (`mirror_traffic`) is also copied to the mirror deployment; `Mirror` queues
those copies (bounded: a copy that does not fit is dropped and counted) and scores them in the
background, so the caller never waits for one.

`Traffic` is immutable: a change builds a new one, swapped in as one reference, so a request
routes on one consistent split. A helper module: nothing at import, no stage script imported.
"""

from __future__ import annotations

import asyncio
import logging
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Awaitable, Callable, Mapping

log = logging.getLogger("app_score_api")

DEPLOYMENT_HEADER = "azureml-model-deployment"
MIRROR_QUEUE = 64  # mirrored copies waiting to be scored; more are dropped (and counted)


class RouteError(Exception):
    """No deployment answers this request: the status (404) and the JSON message."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Traffic:
    """One split of an endpoint's traffic and its mirror, validated beforehand (endpoint_spec)."""

    weights: dict[str, int]                  # every deployment, 0-100, summing to 100 or 0
    mirror: dict[str, int]                   # {} or {name: 1..50}
    live: tuple[str, ...] = field(default=())        # deployments above 0
    bounds: tuple[int, ...] = field(default=())      # their cumulative weights
    mirror_name: str | None = None
    mirror_share: float = 0.0                # 0..0.5

    @classmethod
    def of(cls, weights: Mapping[str, int], mirror: Mapping[str, int] | None = None) -> Traffic:
        live = tuple(name for name, weight in weights.items() if weight > 0)
        bounds = tuple(accumulate(weights[name] for name in live))
        shares = {name: share for name, share in (mirror or {}).items() if share > 0}
        name = next(iter(shares), None)
        return cls(dict(weights), shares, live, bounds, name, shares[name] / 100 if name else 0.0)

    def pick(self, draw: Callable[[], float] = random.random) -> str | None:
        """A deployment drawn by weight; None when no deployment has traffic."""
        if not self.live:
            return None
        if len(self.live) == 1:
            return self.live[0]
        return self.live[bisect_right(self.bounds, draw() * self.bounds[-1])]

    def mirrored(self, draw: Callable[[], float] = random.random) -> str | None:
        """The mirror deployment when this request is one of the mirrored share, else None."""
        if self.mirror_name is None or draw() >= self.mirror_share:
            return None
        return self.mirror_name


def choose(traffic: Traffic, header: str | None, known: Mapping[str, Any], endpoint: str) -> tuple[str, str | None]:
    """(deployment that answers, mirror deployment or None) for a request with this header value."""
    if header is not None:
        name = header.strip()
        if name not in known:
            raise RouteError(404, f"endpoint {endpoint} has no deployment named {name!r} "
                                  f"({DEPLOYMENT_HEADER}); its deployments: {', '.join(known)}")
        return name, None  # Azure mirrors only requests without the header
    name = traffic.pick()
    if name is None:
        raise RouteError(404, f"endpoint {endpoint} has no deployment with traffic above 0: send the "
                              f"{DEPLOYMENT_HEADER} header (deployments: {', '.join(known)}) or give one traffic "
                              f"(python endpoint.py update --traffic ...)")
    return name, traffic.mirrored()


# ----- mirrored copies ---------------------------------------------------------------------
Scorer = Callable[[str, bytes, str], Awaitable[int]]


class Mirror:
    """A bounded queue of mirrored copies, scored one at a time by a background task.

    `offer` never blocks and never raises: a full queue drops the copy (`on_drop(deployment)`).
    `score(deployment, body, request_id)` does the work and returns the status it would answer.
    """

    def __init__(self, score: Scorer, on_drop: Callable[[str], None], size: int = MIRROR_QUEUE):
        self._score, self._on_drop, self._size = score, on_drop, size
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue(self._size)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def offer(self, deployment: str, body: bytes, rid: str) -> bool:
        """Queue a copy for `deployment`; False (and counted) when it had to be dropped."""
        if self._queue is None:
            self._on_drop(deployment)
            return False
        try:
            self._queue.put_nowait((deployment, body, rid))
        except asyncio.QueueFull:
            self._on_drop(deployment)
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            deployment, body, rid = await self._queue.get()
            try:
                await self._score(deployment, body, rid)
            except Exception:  # a mirrored copy must never stop the mirror, nor reach a caller
                log.exception("mirrored copy to %s failed", deployment)
