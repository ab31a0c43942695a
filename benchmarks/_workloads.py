"""Workload definitions shared by the harness, the server and the clients."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

API_KEY = "bench-api-key"
API_KEY_HEADER = "X-Inveterate-Api-Key"
FIRST_MEMBER_ID = 6_100_000_000_000
# What the server waits before answering in the fan-out-with-latency workloads.
LATENCY_MS = 10.0


@dataclass(frozen=True)
class Workload:
    """How many members, credits per member and credits per page one workload fetches."""

    name: str
    role: str
    members: int
    credits_per_member: int
    page_size: int
    concurrency: int = 1
    latency_ms: float = 0.0

    @property
    def expected_count(self) -> int:
        """Credits a client must yield in one round."""
        return self.members * self.credits_per_member

    @property
    def pages_per_member(self) -> int:
        """Requests needed for one member (an empty history is still one request)."""
        return max(1, math.ceil(self.credits_per_member / self.page_size))

    @property
    def expected_requests(self) -> int:
        """Requests a client needs in one round."""
        return self.members * self.pages_per_member

    def member_ids(self) -> list[str]:
        """Customer IDs, numeric strings like the real API's."""
        return [str(FIRST_MEMBER_ID + i) for i in range(self.members)]

    def describe(self) -> str:
        """One line for the report."""
        text = (
            f"{self.name} {self.role}: {self.members:,} member(s) x "
            f"{self.credits_per_member:,} credits, page size {self.page_size}"
        )
        if self.concurrency > 1:
            text += f", concurrency {self.concurrency}"
        if self.latency_ms:
            text += f", server latency {self.latency_ms:g} ms"
        return text

    def to_json(self) -> str:
        """Serialise for a subprocess's command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def workloads(quick: bool) -> dict[str, Workload]:
    """The workloads by name, scaled down with ``quick``.

    W2-c8, W2-c32 and W2-c128 are W2 against a server that waits ``LATENCY_MS`` before
    each answer, at three concurrencies.
    """
    scale = 10 if quick else 1
    fan_out = {"members": 1_000 // scale, "credits_per_member": 100, "page_size": 50}
    with_latency = {
        f"W2-c{concurrency}": Workload(
            f"W2-c{concurrency}",
            "fan-out with latency",
            **fan_out,
            concurrency=concurrency,
            latency_ms=LATENCY_MS,
        )
        for concurrency in (8, 32, 128)
    }
    return {
        "W1": Workload("W1", "throughput", 1, 100_000 // scale, 100),
        "W2": Workload("W2", "fan-out", **fan_out, concurrency=32),
        **with_latency,
        "W3": Workload("W3", "memory", 1, 50_000 if quick else 1_000_000, 500),
    }
