"""Hooks: callables an embedding application registers on a catalog object, run before
and after its operations.

A *before* hook may refuse the operation by raising: its exception reaches the caller
and nothing changes. An *after* hook sees the result. An *upload wrapper* receives the
incoming chunks and returns the chunks to store (to scan or transform them); the stored
size and sha256 are those of the bytes stored. Hooks belong to one catalog object (and
its scoped views); there is no global registry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .errors import InvalidInput

OPERATIONS = (
    "create",
    "update",
    "activate",
    "deactivate",
    "reactivate",
    "upload",
    "add_location",
    "download",
    "delete",
)


@dataclass(frozen=True)
class HookEvent:
    """What a hook is told: the operation, the catalog view it runs on, the arguments,
    and (for after hooks) the result."""

    operation: str
    catalog: Any  # the Catalog view the operation ran on (typed loosely: no import cycle)
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    result: Any = None

    @property
    def artifact_id(self) -> str | None:
        """The artifact operated on (None for create, whose id does not exist yet)."""
        return None if self.operation == "create" else self.args[0]

    @property
    def slot(self) -> str | None:
        """``field`` or ``field/key`` for blob operations."""
        blob_ops = ("upload", "add_location", "download")
        return self.args[1] if self.operation in blob_ops and len(self.args) > 1 else None


Hook = Callable[[HookEvent], None]
UploadWrapper = Callable[[HookEvent, Iterable[bytes]], Iterable[bytes]]


class Hooks:
    def __init__(self) -> None:
        self._before: dict[str, list[Hook]] = {op: [] for op in OPERATIONS}
        self._after: dict[str, list[Hook]] = {op: [] for op in OPERATIONS}
        self._wrappers: list[UploadWrapper] = []

    @overload
    def before(self, operation: str, hook: Hook) -> Hook: ...
    @overload
    def before(self, operation: str, hook: None = None) -> Callable[[Hook], Hook]: ...
    def before(self, operation: str, hook: Hook | None = None) -> Any:
        """Run ``hook(event)`` before ``operation``; raising refuses the operation.
        Without ``hook``, a decorator: ``@catalog.hooks.before("activate")``."""
        return self._register(self._before, operation, hook)

    @overload
    def after(self, operation: str, hook: Hook) -> Hook: ...
    @overload
    def after(self, operation: str, hook: None = None) -> Callable[[Hook], Hook]: ...
    def after(self, operation: str, hook: Hook | None = None) -> Any:
        """Run ``hook(event)`` after ``operation`` succeeded; ``event.result`` is its result.
        Without ``hook``, a decorator."""
        return self._register(self._after, operation, hook)

    @staticmethod
    def _register(table: dict[str, list[Hook]], operation: str, hook: Hook | None) -> Any:
        hooks = table[_check(operation)]
        if hook is not None:
            hooks.append(hook)
            return hook

        def decorate(fn: Hook) -> Hook:
            hooks.append(fn)
            return fn

        return decorate

    def wrap_upload(self, wrapper: UploadWrapper) -> UploadWrapper:
        """Pass every upload's chunks through ``wrapper(event, chunks) -> chunks``."""
        self._wrappers.append(wrapper)
        return wrapper

    def remove(self, hook: Callable[..., Any]) -> None:
        for table in (self._before, self._after):
            for hooks in table.values():
                while hook in hooks:
                    hooks.remove(hook)
        while hook in self._wrappers:
            self._wrappers.remove(hook)

    def _wrap(self, event: HookEvent, chunks: Iterable[bytes]) -> Iterable[bytes]:
        for wrapper in self._wrappers:
            chunks = wrapper(event, chunks)
        return chunks

    def _busy(self, operation: str) -> bool:
        return bool(
            self._before[operation]
            or self._after[operation]
            or (operation == "upload" and self._wrappers)
        )


def _check(operation: str) -> str:
    if operation not in OPERATIONS:
        raise InvalidInput(f"no hookable operation {operation!r}; one of {', '.join(OPERATIONS)}")
    return operation


F = TypeVar("F", bound=Callable[..., Any])


def hooked(operation: str) -> Callable[[F], F]:
    """Decorate a Catalog method so its before/after hooks run around it."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            hooks: Hooks = self.hooks
            if not hooks._busy(operation):
                return method(self, *args, **kwargs)
            event = HookEvent(operation, self, args, kwargs)
            for hook in list(hooks._before[operation]):
                hook(event)
            if operation == "upload" and hooks._wrappers and len(args) > 2:
                args = (*args[:2], hooks._wrap(event, _chunks(args[2])), *args[3:])
            result = method(self, *args, **kwargs)
            done = HookEvent(operation, self, args, kwargs, result)
            for hook in list(hooks._after[operation]):
                hook(done)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _chunks(source: Any) -> Iterable[bytes]:
    from ._hashing import iter_source

    return iter_source(source)
