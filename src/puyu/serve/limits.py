"""The server's default limits (no imports: the CLI reads them for its help text)."""

# Most bytes of a request body; a prompt that long is far past any context window anyway.
DEFAULT_MAX_REQUEST_BYTES = 8 * 2**20
