"""Form decoding the way Stripe's API decodes `application/x-www-form-urlencoded`.

Stripe (Rack-style) bracket syntax:
  a=1                 -> {"a": "1"}
  a[b][c]=1           -> {"a": {"b": {"c": "1"}}}
  a[]=1&a[]=2         -> {"a": ["1", "2"]}
  a[0]=1&a[1]=2       -> {"a": ["1", "2"]}          (integer keys become a list, ordered by index)
  a[0][x]=1&a[1][x]=2 -> {"a": [{"x": "1"}, {"x": "2"}]}
  a[][x]=1&a[][y]=2   -> {"a": [{"x": "1", "y": "2"}]}  (Rack merges into the last element)
Every leaf value stays a string: Stripe coerces per parameter (integers, booleans) and
reports `parameter_invalid_integer` etc. when it cannot.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qsl


class FormError(ValueError):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def split_key(key: str) -> List[str]:
    """'a[b][]' -> ['a', 'b', '']"""
    if "[" not in key:
        return [key]
    head, rest = key.split("[", 1)
    parts = [head]
    rest = "[" + rest
    while rest:
        if not rest.startswith("["):
            raise FormError(f"Invalid parameter name: {key}", key)
        end = rest.find("]")
        if end < 0:
            raise FormError(f"Invalid parameter name: {key}", key)
        parts.append(rest[1:end])
        rest = rest[end + 1:]
    if parts[0] == "":
        raise FormError(f"Invalid parameter name: {key}", key)
    return parts


_APPEND = object()


def _insert(container: Dict[str, Any], parts: List[str], value: str, full_key: str) -> None:
    key = parts[0]
    rest = parts[1:]
    if not rest:
        container[key] = value
        return
    nxt = rest[0]
    if nxt == "":
        # array append
        lst = container.get(key)
        if lst is None:
            lst = container[key] = []
        if not isinstance(lst, list):
            raise FormError(f"Invalid array for parameter {full_key}", full_key)
        if len(rest) == 1:
            lst.append(value)
            return
        sub = rest[1:]
        # Rack semantics: merge into the last hash unless the key is already there
        if lst and isinstance(lst[-1], dict) and sub[0] not in lst[-1]:
            _insert(lst[-1], sub, value, full_key)
        else:
            d: Dict[str, Any] = {}
            lst.append(d)
            _insert(d, sub, value, full_key)
        return
    sub_container = container.get(key)
    if sub_container is None:
        sub_container = container[key] = {}
    if isinstance(sub_container, str):
        raise FormError(f"Invalid hash for parameter {full_key}", full_key)
    if isinstance(sub_container, list):
        raise FormError(f"Invalid hash for parameter {full_key}", full_key)
    _insert(sub_container, rest, value, full_key)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        for k in list(node.keys()):
            node[k] = _listify(node[k])
        if node and all(k.isdigit() for k in node.keys()):
            return [node[k] for k in sorted(node.keys(), key=int)]
        return node
    if isinstance(node, list):
        return [_listify(x) for x in node]
    return node


def parse_pairs(pairs: List[Tuple[str, str]]) -> Dict[str, Any]:
    root: Dict[str, Any] = {}
    for k, v in pairs:
        parts = split_key(k)
        _insert(root, parts, v, k)
    return _listify(root)


def parse_form(body: str) -> Dict[str, Any]:
    """Parse a form-encoded body (or query string) into nested params."""
    if not body:
        return {}
    pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=False)
    return parse_pairs(pairs)
