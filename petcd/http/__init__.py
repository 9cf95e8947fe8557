"""The HTTP side of a member (``petcd.http.side``) and the client ports' byte sniffer
(``petcd.http.clientport``). Nothing is imported here: the front-end processes import the sniffer,
and the member's modules the side pulls in would cost each of them ~0.3 s at start."""
