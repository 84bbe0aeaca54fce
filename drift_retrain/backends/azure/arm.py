"""Azure Resource Manager ids: the pieces the SDK clients are constructed from."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ARM = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/(?P<provider>[^/]+/[^/]+)/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ArmId:
    subscription: str
    resource_group: str
    provider: str  # e.g. Microsoft.DataFactory/factories
    name: str

    @classmethod
    def parse(cls, resource_id: str) -> ArmId:
        match = _ARM.match(resource_id.strip())
        if match is None:
            raise ValueError(f"not an ARM resource id: {resource_id!r}")
        return cls(match["subscription"], match["group"], match["provider"], match["name"])

    def __str__(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/{self.provider}/{self.name}"
