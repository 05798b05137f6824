"""Pure domain logic: no I/O, no database, no HTTP. Tested without a server."""
