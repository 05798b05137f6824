"""The MCP front door: ``/mcp`` (streamable HTTP, the ``mcp`` SDK's ``MCPServer``), its
RFC 9728 protected resource metadata, and its gate."""
