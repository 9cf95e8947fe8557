from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Lease(_message.Message):
    __slots__ = ("id", "ttl", "remaining_ttl")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_TTL_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl: int
    remaining_ttl: int
    def __init__(self, id: _Optional[int] = ..., ttl: _Optional[int] = ..., remaining_ttl: _Optional[int] = ...) -> None: ...
