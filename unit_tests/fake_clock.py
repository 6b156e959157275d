"""A fake clock: time moves only when the code under test sleeps or a test advances it, so no test waits."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Monotonic (or wall) time as a number; `sleep` records each wait and moves the time on."""

    now: float = 1000.0
    start: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start = self.now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def elapsed(self) -> float:
        return self.now - self.start
