"""`/_control/webhooks/...`: inspect and steer webhook delivery (webhooks.py's Dispatcher):
deliveries, pause/resume, discard, redeliver, wait, config, sign. control.py mounts them.

A handler is called as `handler(fake, query, body, endpoint)`, with `endpoint` (platform |
connect | None for both) already checked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import events
from .routes import Router

if TYPE_CHECKING:
    from .server import FakeStripe

Reply = Tuple[int, Any]
Handler = Callable[..., Reply]
ROUTES: List[Tuple[str, str, Handler]] = []  # (method, path under /webhooks, handler)


def route(method: str, subpath: str) -> Callable[[Handler], Handler]:
    def add(fn: Handler) -> Handler:
        ROUTES.append((method, subpath, fn))
        return fn
    return add


def mount(router: Router, prefix: str) -> None:
    """Add these routes to the control router under `prefix`, then a catch-all for the rest
    of the subtree; each checks the `endpoint` parameter first."""
    for method, subpath, fn in ROUTES:
        router.add(method, prefix + subpath, _checked(fn))
    router.add("*", prefix + "/{rest:.*}", _checked(_unknown))


def _checked(fn: Handler) -> Handler:
    def handler(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any], **_: str
                ) -> Reply:
        ep = body.get("endpoint") or q.get("endpoint")
        if ep is not None and ep not in fake.dispatcher.endpoints:
            raise ValueError("endpoint must be platform or connect")
        return fn(fake, q, body, ep)
    return handler


def _unknown(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
             ep: Optional[str]) -> Reply:
    return 404, {"error": {"message": "unknown webhooks control endpoint"}}


def as_list(v: Union[None, str, Sequence[str]]) -> List[str]:
    """Secrets as a list, from a list or a comma-separated string."""
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [s for s in v if s]


def _paused(fake: "FakeStripe") -> Dict[str, bool]:
    return {k: v.paused for k, v in fake.dispatcher.endpoints.items()}


@route("*", "")
@route("*", "/deliveries")
def deliveries(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
               ep: Optional[str]) -> Reply:
    return 200, {"data": fake.dispatcher.list(q.get("event_id"), q.get("endpoint"),
                                              q.get("state"), q.get("type")),
                 "paused": _paused(fake)}


@route("POST", "/pause")
def pause(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
          ep: Optional[str]) -> Reply:
    fake.dispatcher.pause(ep)
    return 200, {"paused": _paused(fake)}


@route("POST", "/resume")
def resume(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
           ep: Optional[str]) -> Reply:
    fake.dispatcher.resume(ep)
    return 200, {"paused": _paused(fake)}


@route("POST", "/discard_pending")
def discard_pending(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                    ep: Optional[str]) -> Reply:
    return 200, {"discarded": fake.dispatcher.discard_pending(ep)}


@route("POST", "/redeliver")
def redeliver(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
              ep: Optional[str]) -> Reply:
    """The same bytes again, freshly signed; `sync` sends one attempt now and returns it."""
    out = []
    for evt_id in body.get("event_ids") or [body["event_id"]]:
        with fake.core.lock:
            found = events.stored(fake.core, evt_id)
        if found is None:
            return 404, {"error": {"message": f"No such event: {evt_id}"}}
        evt, body_bytes = found
        if body.get("sync"):
            out.append(fake.dispatcher.deliver_now(evt, body_bytes, ep))
        else:
            out.append(fake.dispatcher.enqueue(evt, body_bytes, ep))
    return 200, {"data": out}


@route("POST", "/wait")
def wait(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
         ep: Optional[str]) -> Reply:
    return 200, {"idle": fake.dispatcher.wait_idle(float(body.get("timeout", 10)))}


@route("POST", "/config")
def config(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
           ep: Optional[str]) -> Reply:
    d = fake.dispatcher
    if "max_attempts" in body:
        d.max_attempts = int(body["max_attempts"])
    if "backoff" in body:
        d.backoff = float(body["backoff"])
    if "timeout" in body:
        d.timeout = float(body["timeout"])
    for name in ("platform", "connect"):
        if f"{name}_url" in body:
            d.endpoints[name].url = body[f"{name}_url"] or None
        if f"{name}_secrets" in body:
            d.endpoints[name].secrets = as_list(body[f"{name}_secrets"])
    return 200, {"max_attempts": d.max_attempts, "backoff": d.backoff, "timeout": d.timeout,
                 "endpoints": {k: {"url": v.url, "secrets": len(v.secrets),
                                   "paused": v.paused}
                               for k, v in d.endpoints.items()}}


@route("POST", "/sign")
def sign(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
         ep: Optional[str]) -> Reply:
    raw = body.get("payload", "").encode("utf-8")
    return 200, {"header": fake.sign(raw, ep or "platform", body.get("timestamp"))}
