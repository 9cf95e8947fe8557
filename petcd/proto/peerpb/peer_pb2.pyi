from petcd.proto.raftpb import raft_pb2 as _raft_pb2
from petcd.proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageBatch(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id", "messages")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    messages: _containers.RepeatedCompositeFieldContainer[_raft_pb2.Message]
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[_raft_pb2.Message, _Mapping]]] = ...) -> None: ...

class SendAck(_message.Message):
    __slots__ = ("received",)
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    received: int
    def __init__(self, received: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id", "message", "total_size", "offset", "data")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    message: _raft_pb2.Message
    total_size: int
    offset: int
    data: bytes
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., message: _Optional[_Union[_raft_pb2.Message, _Mapping]] = ..., total_size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SnapshotAck(_message.Message):
    __slots__ = ("received_bytes",)
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    received_bytes: int
    def __init__(self, received_bytes: _Optional[int] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ...) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("cluster_id", "member_id", "server_version", "cluster_version")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    member_id: int
    server_version: str
    cluster_version: str
    def __init__(self, cluster_id: _Optional[int] = ..., member_id: _Optional[int] = ..., server_version: _Optional[str] = ..., cluster_version: _Optional[str] = ...) -> None: ...

class ForwardLeaseRenewRequest(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id", "lease_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    lease_id: int
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., lease_id: _Optional[int] = ...) -> None: ...

class ForwardLeaseRenewResponse(_message.Message):
    __slots__ = ("lease_id", "ttl")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    ttl: int
    def __init__(self, lease_id: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class ForwardLeaseTimeToLiveRequest(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id", "request")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    request: _rpc_pb2.LeaseTimeToLiveRequest
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., request: _Optional[_Union[_rpc_pb2.LeaseTimeToLiveRequest, _Mapping]] = ...) -> None: ...

class ForwardLeaseTimeToLiveResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: _rpc_pb2.LeaseTimeToLiveResponse
    def __init__(self, response: _Optional[_Union[_rpc_pb2.LeaseTimeToLiveResponse, _Mapping]] = ...) -> None: ...

class ForwardMemberPromoteRequest(_message.Message):
    __slots__ = ("cluster_id", "sender_id", "receiver_id", "member_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    sender_id: int
    receiver_id: int
    member_id: int
    def __init__(self, cluster_id: _Optional[int] = ..., sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., member_id: _Optional[int] = ...) -> None: ...

class ForwardMemberPromoteResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[_rpc_pb2.Member]
    def __init__(self, members: _Optional[_Iterable[_Union[_rpc_pb2.Member, _Mapping]]] = ...) -> None: ...
