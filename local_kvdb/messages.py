"""Request and response values passed between the HTTP layer and the KvDB API logic."""

from dataclasses import dataclass, field
from email.message import Message

TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    client_ip: str


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT_PLAIN
    headers: dict[str, str] = field(default_factory=dict)
    ops_applied: int = 0


class HttpError(Exception):
    """An API error: answered with its status and a one-line text/plain message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def to_response(self) -> Response:
        return Response(self.status, (self.message + "\n").encode(), headers=self.headers)
