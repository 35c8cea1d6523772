"""Hooks: callables an embedding application registers on a catalog object, run before
and after its operations.

A *before* hook may refuse the operation by raising: its exception reaches the caller
and nothing has been written. An *after* hook sees the result; if it raises, the
operation has already committed, and the caller gets ``AfterHookFailed`` (which says
so and carries the result) with the hook's exception as its cause. An *upload wrapper*
receives the incoming chunks and returns the chunks to store (to scan or transform
them); the stored size and sha256 are those of the bytes stored. Hooks belong to one
catalog object (and its scoped views); there is no global registry.

Arguments are bound by name (``inspect.signature``), so every call style reaches the
hooks the same way: ``event.arguments["slot"]``, ``event.artifact_id``. The
``download`` hooks run for every read of a blob's bytes: ``download``, ``open_blob``
and each item of ``open_blobs`` (the mirror reads through these).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar, overload

from .errors import AfterHookFailed, InvalidInput

OPERATIONS = (
    "create",
    "update",
    "activate",
    "deactivate",
    "reactivate",
    "publish",
    "upload",
    "add_location",
    "download",
    "delete",
)


@dataclass(frozen=True)
class HookEvent:
    """What a hook is told: the operation, the catalog view it runs on, the arguments
    as given (``args``, ``kwargs``) and bound to their names (``arguments``: only those
    given), and (for after hooks) the result."""

    operation: str
    catalog: Any  # the Catalog view the operation ran on (typed loosely: no import cycle)
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    result: Any = None
    arguments: Mapping[str, Any] = field(default_factory=dict)

    @property
    def artifact_id(self) -> str | None:
        """The artifact operated on (None for create, whose id does not exist yet)."""
        value = self.arguments.get("artifact_id")
        return value if isinstance(value, str) else None

    @property
    def slot(self) -> str | None:
        """``field`` or ``field/key`` for blob operations."""
        value = self.arguments.get("slot")
        return value if isinstance(value, str) else None


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

    def run_before(self, event: HookEvent) -> None:
        """Every before hook of the event's operation; the first to raise refuses it."""
        for hook in list(self._before[event.operation]):
            hook(event)

    def run_after(self, event: HookEvent) -> None:
        """Every after hook, even when one fails; a failure is reported as
        AfterHookFailed, which says the operation committed."""
        failure: BaseException | None = None
        for hook in list(self._after[event.operation]):
            try:
                hook(event)
            except Exception as exc:  # the change stands; report the first failure
                failure = failure or exc
        if failure is not None:
            raise AfterHookFailed(
                f"{event.operation} committed, but an after hook failed: {failure}",
                event.result,
            ) from failure

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
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            hooks: Hooks = self.hooks
            if not hooks._busy(operation):
                return method(self, *args, **kwargs)
            bound = signature.bind(self, *args, **kwargs)  # a bad call: TypeError, as unhooked
            event = make_event(operation, self, args, kwargs, bound.arguments)
            hooks.run_before(event)
            if operation == "upload" and hooks._wrappers and "source" in bound.arguments:
                bound.arguments["source"] = hooks._wrap(event, _chunks(bound.arguments["source"]))
            result = method(*bound.args, **bound.kwargs)
            hooks.run_after(replace(event, result=result))
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def make_event(
    operation: str,
    catalog: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    arguments: Mapping[str, Any],
) -> HookEvent:
    named = {k: v for k, v in arguments.items() if k != "self"}
    return HookEvent(operation, catalog, args, dict(kwargs), arguments=MappingProxyType(named))


def _chunks(source: Any) -> Iterable[bytes]:
    from ._hashing import iter_source

    return iter_source(source)
