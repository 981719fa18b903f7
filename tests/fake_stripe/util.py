"""Small helpers: ids, parameter coercion, metadata, list pagination."""
from __future__ import annotations

import copy
import secrets
import string
from typing import Any, Callable, Dict, Iterable, List, Optional

from .errors import invalid, param_missing, param_unknown

_ALNUM = string.ascii_letters + string.digits


def rand(n: int = 24) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def new_id(prefix: str, n: int = 24) -> str:
    return f"{prefix}_{rand(n)}"


def request_id() -> str:
    return "req_" + rand(14)


def deep(o: Any) -> Any:
    return copy.deepcopy(o)


# ---- parameter coercion --------------------------------------------------------------

def check_unknown(params: Dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed) | {"expand"}
    for k in params:
        if k not in allowed:
            raise param_unknown(k)


def get_str(params: Dict[str, Any], name: str, required: bool = False,
            choices: Optional[Iterable[str]] = None, label: Optional[str] = None) -> Optional[str]:
    label = label or name
    v = params.get(name)
    if v is None:
        if required:
            raise param_missing(label)
        return None
    if not isinstance(v, str):
        raise invalid(f"Invalid string: {label} must be a string", param=label,
                      code="parameter_invalid_string")
    if required and v == "":
        raise invalid(f"You passed an empty string for '{label}'. We assume empty values are "
                      f"an attempt to unset a parameter; however '{label}' cannot be unset. "
                      f"You should remove '{label}' from your request or supply a non-empty value.",
                      param=label, code="parameter_invalid_empty")
    if choices is not None and v not in choices:
        ch = list(choices)
        raise invalid(f"Invalid {label}: must be one of {', '.join(ch[:-1])}, or {ch[-1]}"
                      if len(ch) > 1 else f"Invalid {label}: must be {ch[0]}", param=label)
    return v


def get_int(params: Dict[str, Any], name: str, required: bool = False,
            minimum: Optional[int] = None, label: Optional[str] = None) -> Optional[int]:
    label = label or name
    v = params.get(name)
    if v is None:
        if required:
            raise param_missing(label)
        return None
    if not isinstance(v, str) or v.strip() == "" or not (v.lstrip("-").isdigit()):
        raise invalid(f"Invalid integer: {v if isinstance(v, str) else '[object]'}", param=label,
                      code="parameter_invalid_integer")
    iv = int(v)
    if minimum is not None and iv < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", param=label,
                      code="parameter_invalid_integer")
    return iv


def get_bool(params: Dict[str, Any], name: str, default: Optional[bool] = None,
             label: Optional[str] = None) -> Optional[bool]:
    label = label or name
    v = params.get(name)
    if v is None:
        return default
    if v in ("true", "True", "1"):
        return True
    if v in ("false", "False", "0"):
        return False
    raise invalid(f"Invalid boolean: {v}", param=label)


def get_dict(params: Dict[str, Any], name: str, allowed: Optional[Iterable[str]] = None,
             label: Optional[str] = None) -> Optional[Dict[str, Any]]:
    label = label or name
    v = params.get(name)
    if v is None:
        return None
    if v == "":
        return {}
    if not isinstance(v, dict):
        raise invalid("Invalid object", param=label)
    if allowed is not None:
        for k in v:
            if k not in allowed:
                raise param_unknown(f"{label}[{k}]")
    return v


def get_list(params: Dict[str, Any], name: str) -> List[Any]:
    v = params.get(name)
    if v is None or v == "":
        return []
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [v]
    raise invalid("Invalid array", param=name)


def apply_metadata(current: Dict[str, str], params: Dict[str, Any]) -> Dict[str, str]:
    """Stripe metadata semantics: keys merge; `metadata[k]=` unsets k; `metadata=` clears."""
    if "metadata" not in params:
        return current
    v = params["metadata"]
    if v == "":
        return {}
    if not isinstance(v, dict):
        raise invalid("Invalid hash", param="metadata")
    out = dict(current)
    for k, val in v.items():
        if not isinstance(val, str):
            raise invalid(f"Invalid value for metadata[{k}]: metadata values must be strings",
                          param=f"metadata[{k}]")
        if len(k) > 40:
            raise invalid(f"Metadata keys can have up to 40 characters, but you passed in a key "
                          f"that has {len(k)} characters.", param=f"metadata[{k}]")
        if len(val) > 500:
            raise invalid(f"Metadata values can have up to 500 characters, but you passed in a "
                          f"value that is {len(val)} characters.", param=f"metadata[{k}]")
        if val == "":
            out.pop(k, None)
        else:
            out[k] = val
    if len(out) > 50:
        raise invalid("You can have up to 50 metadata keys.", param="metadata")
    return out


def check_currency(v: Optional[str], param: str = "currency") -> str:
    if v is None:
        raise param_missing(param)
    if len(v) != 3 or not v.isalpha():
        raise invalid(f"Invalid currency: {v}. Stripe currently supports these currencies: usd, "
                      f"eur, gbp, ...", param=param)
    return v.lower()


def created_filter(params: Dict[str, Any], field: str = "created") -> Callable[[int], bool]:
    v = params.get(field)
    if v is None:
        return lambda _c: True
    if isinstance(v, str):
        exact = get_int(params, field)
        return lambda c: c == exact
    if isinstance(v, dict):
        bounds = {}
        for op in ("gt", "gte", "lt", "lte"):
            if op in v:
                bounds[op] = get_int(v, op, label=f"{field}[{op}]")
        for k in v:
            if k not in ("gt", "gte", "lt", "lte"):
                raise param_unknown(f"{field}[{k}]")

        def f(c: int) -> bool:
            return (("gt" not in bounds or c > bounds["gt"]) and
                    ("gte" not in bounds or c >= bounds["gte"]) and
                    ("lt" not in bounds or c < bounds["lt"]) and
                    ("lte" not in bounds or c <= bounds["lte"]))
        return f
    raise invalid("Invalid created filter", param=field)


def paginate(items: List[Dict[str, Any]], params: Dict[str, Any], url: str) -> Dict[str, Any]:
    """`items` newest first. Supports limit (1..100, default 10), starting_after, ending_before."""
    limit = get_int(params, "limit")
    if limit is None:
        limit = 10
    if limit < 1 or limit > 100:
        raise invalid("This value must be between 1 and 100.", param="limit")
    sa = params.get("starting_after")
    eb = params.get("ending_before")
    ids = [o["id"] for o in items]
    if sa:
        if sa not in ids:
            raise invalid(f"Invalid starting_after id: {sa}", param="starting_after",
                          code="resource_missing", status=404)
        i = ids.index(sa)
        window = items[i + 1:]
        data = window[:limit]
        has_more = len(window) > limit
    elif eb:
        if eb not in ids:
            raise invalid(f"Invalid ending_before id: {eb}", param="ending_before",
                          code="resource_missing", status=404)
        i = ids.index(eb)
        window = items[:i]
        data = window[-limit:] if limit < len(window) else window
        has_more = len(window) > limit
    else:
        data = items[:limit]
        has_more = len(items) > limit
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
