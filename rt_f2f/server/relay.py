"""Fan-out without waiting: one producer's items handed to every subscribed sink."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Sink(Protocol[T]):
    def put(self, item: T) -> None: ...


class Relay(Generic[T]):
    """One producer, many consumers: ``publish`` hands each item to every subscribed sink without waiting."""

    def __init__(self) -> None:
        self._sinks: list[Sink[T]] = []

    def subscribe(self, sink: Sink[T]) -> None:
        if sink not in self._sinks:
            self._sinks.append(sink)

    def unsubscribe(self, sink: Sink[T]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def publish(self, item: T) -> None:
        for sink in list(self._sinks):
            sink.put(item)

    def clear(self) -> None:
        self._sinks.clear()
