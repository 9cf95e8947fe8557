"""A cluster member as configuration and membership know it: ID, name, URLs, learner or voter."""

from __future__ import annotations

from dataclasses import dataclass, field

from petcd.proto.serverpb import internal_pb2 as serverpb


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False

    def to_record(self) -> serverpb.MemberRecord:
        return serverpb.MemberRecord(
            id=self.id,
            name=self.name,
            peer_urls=self.peer_urls,
            client_urls=self.client_urls,
            is_learner=self.is_learner,
        )

    @classmethod
    def from_record(cls, r: serverpb.MemberRecord) -> Member:
        return cls(r.id, r.name, list(r.peer_urls), list(r.client_urls), r.is_learner)
