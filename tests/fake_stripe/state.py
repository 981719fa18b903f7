"""The fake's shared state: the object store every resource module reads and writes.

`State` holds the objects (and which account owns each), the event bodies, account links and
onboarding sessions, the fake clock and the refund mode, plus what persistence needs (the
snapshot, and the change records the journal is made of; see persist.py). The resource
modules (payment_intents.py, refunds.py, accounts.py, ...) are functions over a State.

Everything here runs under `State.lock` (one RLock): handlers are short and in memory, so a
single lock gives linearizable behaviour, like one Stripe account's object locks would.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import invalid, missing
from .persist import TrackedDict
from .util import check_unknown, created_filter, deep, paginate

DEFAULT_API_VERSION = "2024-06-20"
PLATFORM_APPLICATION = "ca_FakePlatformApplication0001"

KIND_BY_PREFIX = {
    "pi": "payment_intent", "ch": "charge", "re": "refund", "pyr": "refund",
    "acct": "account", "tr": "transfer", "trr": "transfer_reversal", "dp": "dispute",
    "du": "dispute", "evt": "event", "pm": "payment_method", "txn": "balance_transaction",
    "fee": "application_fee", "fr": "fee_refund", "po": "payout", "py": "charge",
    "we": "webhook_endpoint",
}


def kind_of(obj_id: str) -> str:
    return KIND_BY_PREFIX.get(obj_id.split("_", 1)[0], "object")


# The keyed parts of the state. They are TrackedDicts, so each journal record can carry just
# the entries a request fetched or changed (see State.take_changes).
STORES = ("objects", "scope", "event_bodies", "links", "sessions", "login_links")


def _to_json(store: str, value: Any) -> Any:
    return value.decode("utf-8") if store == "event_bodies" else value


def _from_json(store: str, value: Any) -> Any:
    return value.encode("utf-8") if store == "event_bodies" else value


class Ctx:
    """Per-request context."""

    def __init__(self, request_id: Optional[str] = None, idempotency_key: Optional[str] = None,
                 account: Optional[str] = None, base_url: str = "", livemode: bool = False,
                 publishable: bool = False, forced_decline: Optional[str] = None):
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.account = account
        self.base_url = base_url
        self.publishable = publishable
        self.forced_decline = forced_decline  # set when a `decline` fault hit this request


class State:
    """The object store and everything else that persists. Resource modules take it as their
    first argument (`st`); callers hold `lock` around every call."""

    def __init__(self, api_version: str = DEFAULT_API_VERSION, account_link_ttl: int = 300,
                 public_url: Callable[[], str] = lambda: "http://127.0.0.1"):
        self.lock = threading.RLock()
        self.api_version = api_version
        self.account_link_ttl = account_link_ttl
        self.public_url = public_url
        self.on_event: Callable[[Dict[str, Any], bytes], None] = lambda e, b: None
        self.pending_webhooks: Callable[[str], int] = lambda evt_id: 0
        self.reset()

    # ---- state ----------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.objects: TrackedDict = TrackedDict()  # id -> object
            self.scope: TrackedDict = TrackedDict()    # object id -> account (None = platform)
            self.order: List[str] = []                  # creation order of all objects
            self.event_bodies: TrackedDict = TrackedDict()  # event id -> the delivered bytes
            self.links: TrackedDict = TrackedDict()     # account link token -> record
            self.sessions: TrackedDict = TrackedDict()  # onboarding page session -> record
            self.login_links: TrackedDict = TrackedDict()
            self.deauthorized: set = set()
            self.clock_offset = 0
            self.refund_mode = "succeeded"
            # How long a card authorisation holds (charge.payment_method_details.card.capture_before);
            # a test knob, not persisted.
            self.authorization_window_days = 7
            self.mark_saved()

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def advance_clock(self, seconds: int) -> None:
        with self.lock:
            self.clock_offset += seconds

    # ---- persistence (see persist.py) ------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """The whole state, JSON-ready. The values are the live objects: serialise the result
        before releasing `lock`."""
        with self.lock:
            # dict.items: reading a whole store for the snapshot is not a change to track
            data: Dict[str, Any] = {name: {k: _to_json(name, v)
                                           for k, v in dict.items(getattr(self, name))}
                                    for name in STORES}
            data.update(order=self.order, deauthorized=sorted(self.deauthorized),
                        clock_offset=self.clock_offset, refund_mode=self.refund_mode)
            return data

    def restore(self, data: Dict[str, Any]) -> None:
        with self.lock:
            for name in STORES:
                setattr(self, name, TrackedDict(
                    (k, _from_json(name, v)) for k, v in data.get(name, {}).items()))
            self.order = list(data.get("order", []))
            self.deauthorized = set(data.get("deauthorized", []))
            self.clock_offset = data.get("clock_offset", 0)
            self.refund_mode = data.get("refund_mode", "succeeded")
            self.mark_saved()

    def mark_saved(self) -> None:
        """Everything in memory is now on disk: the next change record starts from here."""
        with self.lock:
            for name in STORES:
                getattr(self, name).take_touched()
            self._saved_order = len(self.order)
            self._saved_deauthorized = len(self.deauthorized)
            self._saved_settings = (self.clock_offset, self.refund_mode)

    def take_changes(self) -> Dict[str, Any]:
        """A journal record of what may have changed since the last save ({} if nothing):
        every store entry fetched or set since, and the new tail of `order`. Like snapshot(),
        the values are live: serialise the record before releasing `lock`."""
        with self.lock:
            record: Dict[str, Any] = {}
            for name in STORES:
                store = getattr(self, name)
                keys = store.take_touched()
                put = {k: _to_json(name, store.peek(k)) for k in keys if k in store}
                gone = [k for k in keys if k not in store]
                if put:
                    record.setdefault("set", {})[name] = put
                if gone:
                    record.setdefault("del", {})[name] = gone
            if len(self.order) > self._saved_order:  # `order` is only ever appended to
                record["order"] = self.order[self._saved_order:]
            if len(self.deauthorized) != self._saved_deauthorized:
                # only ever added to, and tiny: the whole set is simpler than a diff
                record["deauthorized"] = sorted(self.deauthorized)
            if (self.clock_offset, self.refund_mode) != self._saved_settings:
                record.update(clock_offset=self.clock_offset, refund_mode=self.refund_mode)
            self.mark_saved()
            return record

    def apply_changes(self, record: Dict[str, Any]) -> None:
        """Replay one take_changes() record (loading the journal)."""
        with self.lock:
            for name in STORES:
                store = getattr(self, name)
                for k, v in record.get("set", {}).get(name, {}).items():
                    store[k] = _from_json(name, v)
                for k in record.get("del", {}).get(name, []):
                    store.pop(k, None)
            self.order.extend(record.get("order", []))
            if "deauthorized" in record:
                self.deauthorized = set(record["deauthorized"])
            self.clock_offset = record.get("clock_offset", self.clock_offset)
            self.refund_mode = record.get("refund_mode", self.refund_mode)
            self.mark_saved()

    # ---- the object store -------------------------------------------------------------
    def scan(self) -> Iterator[Tuple[Dict[str, Any], Optional[str]]]:
        """(object, account) for every object, newest first, to read only: a scan does not
        count as a change, so a list request adds nothing to the next journal record."""
        for i in reversed(self.order):
            yield self.objects.peek(i), self.scope.peek(i)

    def put(self, obj: Dict[str, Any], account: Optional[str]) -> Dict[str, Any]:
        if obj["id"] not in self.objects:
            self.order.append(obj["id"])
        self.objects[obj["id"]] = obj
        self.scope[obj["id"]] = account
        return obj

    def get(self, obj_id: str, ctx: Ctx, kind: Optional[str] = None,
            param: str = "id") -> Dict[str, Any]:
        kind = kind or kind_of(obj_id)
        obj = self.objects.get(obj_id)
        if obj is None or obj.get("object") != kind or self.scope.get(obj_id) != ctx.account:
            raise missing(kind, obj_id, param)
        return obj

    def clean(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def list_objects(self, ctx: Ctx, p: Dict[str, Any], kind: str, path: str,
                     filters: Tuple[str, ...] = (), accepted: Tuple[str, ...] = ()
                     ) -> Dict[str, Any]:
        """A list endpoint: the caller's objects of `kind`, newest first, narrowed by `created`
        and by every field of `filters` the request names (`accepted` fields are allowed and
        ignored, as the fake has no customers)."""
        check_unknown(p, ("limit", "starting_after", "ending_before", "created", *filters,
                          *accepted))
        cf = created_filter(p)
        wanted = {f: p[f] for f in filters if p.get(f) is not None}
        items = [o for o, account in self.scan()
                 if o.get("object") == kind and account == ctx.account and cf(o["created"])
                 and all(o.get(f) == v for f, v in wanted.items())]
        return paginate(items, p, path)

    def retrieve(self, ctx: Ctx, obj_id: str, p: Dict[str, Any], kind: str) -> Dict[str, Any]:
        """GET of an object that has no behaviour of its own (payment methods, ...)."""
        check_unknown(p, ())
        return self.get(obj_id, ctx, kind)

    # ---- rendering (expand[]) ----------------------------------------------------------
    def render(self, obj: Dict[str, Any], expand: List[str], ctx: Ctx) -> Dict[str, Any]:
        out = self.clean(deep(obj))
        if out.get("object") == "event":
            out["pending_webhooks"] = self.pending_webhooks(out["id"])
        for path in expand:
            self._expand(out, path.split("."), ctx)
        return out

    def _expand(self, node: Any, parts: List[str], ctx: Ctx) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if head == "data" and node.get("object") == "list":
            for item in node.get("data", []):
                self._expand(item, rest, ctx)
            return
        if head not in node:
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        val = node[head]
        if isinstance(val, str) and val in self.objects:
            val = node[head] = self.render(self.objects[val], [], ctx)
        elif isinstance(val, str) or (val is not None and not isinstance(val, dict)):
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        if rest and isinstance(val, dict):
            self._expand(val, rest, ctx)
