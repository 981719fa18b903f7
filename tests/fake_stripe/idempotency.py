"""Idempotency keys of `POST /v1/...` requests: the in-progress and finished records, what a
retry gets back, and their persistence (finished records go to the state file).

Keys are scoped per (secret key, `Stripe-Account`); the scope holds a digest of the secret
key so that no API key is ever written to the state file.
"""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple, Union

from .errors import StripeError

IdemKey = Tuple[str, Optional[str], str]  # (secret key's digest, Stripe-Account, Idempotency-Key)


def scope_key(api_key: str, account: Optional[str], idem_key: str) -> IdemKey:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:32], account, idem_key


def _to_json(key: IdemKey, rec: Dict[str, Any]) -> Dict[str, Any]:
    return dict(rec, key=list(key), body=rec["body"].decode("utf-8"))


def _from_json(data: Dict[str, Any]) -> Tuple[IdemKey, Dict[str, Any]]:
    rec = dict(data)
    key = tuple(rec.pop("key"))
    rec["body"] = rec["body"].encode("utf-8")
    return key, rec  # type: ignore[return-value]


class Idempotency:
    """The records, keyed by IdemKey. A record's `status` is None while its request executes.
    `lock` guards them (the fake's meta_lock, shared with the fault list and request log)."""

    def __init__(self, lock: "threading.RLock"):
        self.lock = lock
        self.records: Dict[IdemKey, Dict[str, Any]] = {}
        self.unsaved: Set[IdemKey] = set()  # finished since the last save

    def begin(self, key: IdemKey, method: str, path: str, params: Dict[str, Any],
              request_id: str) -> Union[None, StripeError, Dict[str, Any]]:
        """Claim `key` for this request (None), or say why not: a StripeError to answer
        (another endpoint or other params; still in progress), or the finished record to
        replay."""
        idem_key = key[2]
        with self.lock:
            rec = self.records.get(key)
            if rec is None:
                self.records[key] = {"path": path, "method": method, "params": params,
                                     "status": None, "body": b"", "headers": {},
                                     "request_id": request_id, "created": time.time()}
                return None
            if rec["path"] != path or rec["method"] != method:
                return StripeError(
                    400, "idempotency_error",
                    f"Keys for idempotent requests can only be used for the same "
                    f"endpoint they were first used for ('{rec['method']} "
                    f"{rec['path']}' vs '{method} {path}'). Try using a key other than "
                    f"'{idem_key}' if you meant to execute a different request.",
                    store=False)
            if rec["params"] != params:
                return StripeError(
                    400, "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same "
                    f"parameters they were first used with. Try using a key other than "
                    f"'{idem_key}' if you meant to execute a different request.",
                    store=False)
            if rec["status"] is None:
                return StripeError(
                    409, "idempotency_error",
                    f"There is currently another in-progress request using this "
                    f"Idempotent Key (that probably means you submitted twice, and the "
                    f"other request is still going through): {idem_key}. Please try "
                    f"again later.", code="idempotency_key_in_use", store=False,
                    headers={"Stripe-Should-Retry": "true"})
            return rec

    def finish(self, key: IdemKey, store: bool, status: int, body: bytes,
               headers: Dict[str, str]) -> None:
        """The request is done: keep its response for retries, or (`store` False: validation
        errors, faults) forget the key so that a retry executes again."""
        with self.lock:
            if store:
                self.records[key].update(status=status, body=body, headers=headers)
                self.unsaved.add(key)
            else:
                self.records.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self.records.clear()
            self.unsaved.clear()

    # ---- persistence -----------------------------------------------------------------
    def take_unsaved(self) -> List[Dict[str, Any]]:
        """The records finished since the last save, for a journal line."""
        with self.lock:
            keys, self.unsaved = self.unsaved, set()
            return [_to_json(k, self.records[k]) for k in keys if k in self.records]

    def saved(self) -> List[Dict[str, Any]]:
        """Every finished record, for a snapshot. One still executing is left out: it is
        journaled when it finishes, and after a restart its request can be retried."""
        with self.lock:
            self.unsaved.clear()
            done = [(k, r) for k, r in self.records.items() if r["status"] is not None]
        return [_to_json(k, r) for k, r in done]  # finished records no longer change

    def restore(self, records: List[Dict[str, Any]]) -> None:
        with self.lock:
            for r in records:
                key, rec = _from_json(r)
                self.records[key] = rec
