"""The MCP front door's services: capabilities, the API client its tools call, the tools."""
