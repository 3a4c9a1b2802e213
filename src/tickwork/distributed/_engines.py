"""Adapters from each engine's key-value service to :class:`~._store.KVStore`.

torch.distributed: any ``torch.distributed.Store`` (TCPStore, FileStore, HashStore, PrefixStore).
JAX: the coordination-service client of ``jax.distributed`` (``DistributedRuntimeClient``). Neither
framework is imported here at module import; :func:`as_kv_store` looks at the object it is given.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._store import KVStore, MemoryStore, StoreError

__all__ = ["JaxClientStore", "TorchStore", "as_kv_store"]


def _is_torch_store(obj: object) -> bool:
    for klass in type(obj).__mro__:
        if klass.__name__ == "Store" and klass.__module__.startswith("torch"):
            return True
    return False


def _is_jax_client(obj: object) -> bool:
    return type(obj).__name__ == "DistributedRuntimeClient" or (
        callable(getattr(obj, "key_value_try_get", None))
        and callable(getattr(obj, "blocking_key_value_get", None))
    )


def as_kv_store(store: object) -> KVStore:
    """The :class:`KVStore` for ``store``: a torch Store, a JAX client, or a KVStore already."""
    if isinstance(store, TorchStore | JaxClientStore | MemoryStore):
        return store
    if _is_torch_store(store):
        return TorchStore(store)
    if _is_jax_client(store):
        return JaxClientStore(store)
    if isinstance(store, KVStore):
        return store
    raise TypeError(
        "'store' must be a torch.distributed Store, a jax.distributed coordination client, a "
        f"tickwork.distributed.MemoryStore or None; got {store!r} of type {type(store).__name__}"
    )


class TorchStore:
    """A torch.distributed Store as a :class:`KVStore` (claims are ``compare_set``)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._description = _describe_torch(store)
        self._get_timeout: float | None = None

    @property
    def raw(self) -> Any:
        return self._store

    def _fail(self, what: str, error: BaseException) -> StoreError:
        return StoreError(f"{what} on {self._description} failed: {type(error).__name__}: {error}")

    def claim(self, key: str, value: str) -> bool:
        try:
            current = self._store.compare_set(key, "", value)
        except Exception as e:
            raise self._fail(f"compare_set({key!r})", e) from e
        return bool(_text(current) == value)

    def set(self, key: str, value: str) -> None:
        try:
            self._store.set(key, value)
        except Exception as e:
            raise self._fail(f"set({key!r})", e) from e

    def get_many(self, keys: Sequence[str], present: bool = False) -> list[str | None]:
        keys = list(keys)
        try:
            if keys and (present or self._store.check(keys)):
                if hasattr(self._store, "multi_get"):
                    try:
                        return [_text(v) for v in self._store.multi_get(keys)]
                    except RuntimeError as e:
                        if "not implemented" not in str(e).lower():
                            raise
                return [_text(self._store.get(k)) for k in keys]
            return [_text(self._store.get(k)) if self._store.check([k]) else None for k in keys]
        except Exception as e:
            raise self._fail(f"get of {len(keys)} key(s)", e) from e

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        try:
            self._store.wait(list(keys), datetime.timedelta(seconds=max(timeout, 0.001)))
        except Exception as e:
            if type(e).__name__ == "DistStoreError" and "timeout" in str(e).lower():
                return False
            raise self._fail(f"wait({list(keys)!r})", e) from e
        return True

    def wait_get(self, key: str, timeout: float) -> str | None:
        # A torch get() waits for its key up to the client's timeout: set it on this clone
        # (the original's stays as it was), then one call both waits and reads.
        if self._get_timeout != timeout:
            try:
                self._store.set_timeout(datetime.timedelta(seconds=max(timeout, 0.001)))
            except Exception as e:
                raise self._fail("set_timeout()", e) from e
            self._get_timeout = timeout
        try:
            return _text(self._store.get(key))
        except Exception as e:
            if type(e).__name__ == "DistStoreError" and "timeout" in str(e).lower():
                return None
            raise self._fail(f"get({key!r})", e) from e

    def clone(self) -> TorchStore:
        if hasattr(self._store, "clone"):
            try:
                return TorchStore(self._store.clone())
            except Exception as e:
                raise self._fail("clone()", e) from e
        return self  # pragma: no cover - torch < 2.8: calls share (and serialise on) one client

    def describe(self) -> str:
        return self._description


def _describe_torch(store: Any) -> str:
    inner = store
    while hasattr(inner, "underlying_store"):
        inner = inner.underlying_store
    name = type(inner).__name__
    host, port = getattr(inner, "host", None), getattr(inner, "port", None)
    return f"{name} at {host}:{port}" if host is not None else name


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class JaxClientStore:
    """JAX's coordination-service client as a :class:`KVStore`.

    Claims are ``key_value_set(..., allow_overwrite=False)`` (``ALREADY_EXISTS`` when taken). The
    client is a thread-safe gRPC stub, so clones share it.
    """

    def __init__(self, client: Any, description: str = "jax.distributed coordination service"):
        self._client = client
        self._description = description
        self._lock = threading.Lock()

    def _fail(self, what: str, error: BaseException) -> StoreError:
        return StoreError(f"{what} on {self._description} failed: {type(error).__name__}: {error}")

    def claim(self, key: str, value: str) -> bool:
        try:
            self._client.key_value_set(key, value, allow_overwrite=False)
        except Exception as e:
            if "ALREADY_EXISTS" in str(e) or "already exists" in str(e).lower():
                return False
            raise self._fail(f"key_value_set({key!r})", e) from e
        return True

    def set(self, key: str, value: str) -> None:
        try:
            self._client.key_value_set(key, value, allow_overwrite=True)
        except Exception as e:
            raise self._fail(f"key_value_set({key!r})", e) from e

    def get_many(self, keys: Sequence[str], present: bool = False) -> list[str | None]:
        out: list[str | None] = []
        for key in keys:
            try:
                out.append(_text(self._client.key_value_try_get(key)))
            except Exception as e:
                if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
                    out.append(None)
                    continue
                raise self._fail(f"key_value_try_get({key!r})", e) from e
        return out

    def wait(self, keys: Sequence[str], timeout: float) -> bool:

        limit = time.monotonic() + max(timeout, 0.0)
        for key in keys:
            remaining_ms = max(1, int((limit - time.monotonic()) * 1000))
            try:
                self._client.blocking_key_value_get(key, remaining_ms)
            except Exception as e:
                if "DEADLINE_EXCEEDED" in str(e) or "timed out" in str(e).lower():
                    return False
                raise self._fail(f"blocking_key_value_get({key!r})", e) from e
        return True

    def wait_get(self, key: str, timeout: float) -> str | None:
        try:
            return _text(self._client.blocking_key_value_get(key, max(1, int(timeout * 1000))))
        except Exception as e:
            if "DEADLINE_EXCEEDED" in str(e) or "timed out" in str(e).lower():
                return None
            raise self._fail(f"blocking_key_value_get({key!r})", e) from e

    def clone(self) -> JaxClientStore:
        return self

    def describe(self) -> str:
        return self._description
