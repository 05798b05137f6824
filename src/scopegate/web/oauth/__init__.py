"""The OAuth 2.1 authorization server's HTTP face (``/oauth/*``, RFC 8414 metadata)."""
