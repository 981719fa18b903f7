"""Persistence for `--state-file`: change tracking, and a snapshot plus an append-only journal.

A write must cost the same whatever the size of the state, so a request never rewrites the
whole state. The state lives in two files:

* PATH, the snapshot: the whole state as one JSON object, rewritten only by compaction;
* PATH.journal, JSON lines: a header `{"generation": G}`, then one record per write holding
  only what that write changed.

Loading reads the snapshot and replays the journal. Compaction (at start-up, on stop, on
reset, and when the journal outgrows the snapshot) rewrites the snapshot and starts a new
journal. Each compaction bumps the generation, written into both files. A journal whose
header does not match the snapshot's generation was already folded into the snapshot (the
process stopped after the new snapshot was in place but before the journal was restarted)
and is ignored. Nothing is fsynced: this is test support, and surviving a killed process
(not a power cut) is what matters.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple


class TrackedDict(dict):
    """A dict that remembers every key it handed a value out for or changed.

    The fake mutates objects in place after fetching them (`pi = objects[id]; pi["status"]
    = ...`), so any fetch may be followed by a change: counting fetches as changes is what
    makes the journal correct without a hook at each mutation site. Values are serialised
    when the record is taken (at the end of the request), so changes made through any
    reference before then are in it. Read-only scans use `peek` so that a list request does
    not mark every object as changed.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.touched: Set[Any] = set()

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        self.touched.add(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self.touched.add(key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        self.touched.add(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.touched.add(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self.touched.update(dict.keys(self))
        dict.clear(self)

    def items(self):  # type: ignore[override]
        self.touched.update(dict.keys(self))  # the caller gets every value: all may change
        return dict.items(self)

    def values(self):  # type: ignore[override]
        self.touched.update(dict.keys(self))
        return dict.values(self)

    def peek(self, key: Any, default: Any = None) -> Any:
        """A value for reading only: the caller must not change it (it is not tracked)."""
        return dict.get(self, key, default)

    def take_touched(self) -> Set[Any]:
        """The keys touched since the last call, and start a new set."""
        keys, self.touched = self.touched, set()
        return keys


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


class StateFile:
    """The snapshot file and its journal. Callers serialise access (the fake holds core.lock).

    `compact_ratio` and `compact_min_bytes` decide when the journal has grown enough to be
    worth folding into a new snapshot: past `compact_ratio` times the snapshot, and never
    below `compact_min_bytes`. A compaction costs one snapshot's worth of writing, and it
    only comes after the journal has grown by `compact_ratio` snapshots, so per write its
    cost stays proportional to the write (amortised), not to the state.
    """

    def __init__(self, path: str, compact_ratio: float = 2.0,
                 compact_min_bytes: int = 4 << 20):
        self.path = path
        self.journal_path = path + ".journal"
        self.compact_ratio = compact_ratio
        self.compact_min_bytes = compact_min_bytes
        self.generation = 0
        self.snapshot_bytes = 0
        self.journal_bytes = 0
        self._journal: Optional[Any] = None  # the journal, open for appending

    # ---- loading ----------------------------------------------------------------------
    def load(self) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]:
        """(the snapshot or None, the journal records to replay on top of it, in order)."""
        snapshot = self._read_snapshot()
        self.generation = snapshot.get("generation", 0) if snapshot else 0
        return snapshot, self._read_journal()

    def _read_snapshot(self) -> Optional[Dict[str, Any]]:
        if not os.path.exists(self.path):
            return None
        with open(self.path, "r", encoding="utf-8") as fh:
            return json.load(fh)

    def _read_journal(self) -> List[Dict[str, Any]]:
        if not os.path.exists(self.journal_path):
            return []
        with open(self.journal_path, "rb") as fh:
            lines = fh.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the newline that ends the last complete record
        header = _parse_line(lines[0]) if lines else None
        if not header or header.get("generation") != self.generation:
            return []  # empty, torn header, or already folded into the snapshot
        return _parse_records(lines[1:], self.journal_path)

    # ---- writing ----------------------------------------------------------------------
    def append(self, record: Dict[str, Any]) -> None:
        """One record, as one write() and one flush: a crash can only tear the last line."""
        line = (dumps(record) + "\n").encode("utf-8")
        if self._journal is None:
            self._journal = open(self.journal_path, "ab")
        self._journal.write(line)
        self._journal.flush()
        self.journal_bytes += len(line)

    def wants_compaction(self) -> bool:
        return self.journal_bytes > max(self.compact_min_bytes,
                                        self.compact_ratio * self.snapshot_bytes)

    def compact(self, state: Dict[str, Any]) -> None:
        """Write `state` as the new snapshot, then start an empty journal.

        The order matters: until the snapshot's rename, the old snapshot and the old journal
        are the state; after it, the old journal's header names an older generation, so it
        is ignored even if the process dies before it is truncated.
        """
        self.generation += 1
        text = dumps(dict(state, generation=self.generation))
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)
        self.snapshot_bytes = len(text)
        self.close()
        header = (dumps({"generation": self.generation}) + "\n").encode("utf-8")
        self._journal = open(self.journal_path, "wb")
        self._journal.write(header)
        self._journal.flush()
        self.journal_bytes = len(header)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _parse_line(line: bytes) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_records(lines: Iterable[bytes], where: str) -> List[Dict[str, Any]]:
    """Parse journal records. Only the last line may be torn (a crash in mid-append): it is
    dropped, as that write never finished. A bad line anywhere else means the file was
    damaged some other way, and replaying past it would give a wrong state, so it is an
    error."""
    lines = list(lines)
    records = []
    for n, line in enumerate(lines):
        record = _parse_line(line)
        if record is None:
            if n == len(lines) - 1:
                break
            raise ValueError(f"{where}: line {n + 2} is not a journal record")
        records.append(record)
    return records
