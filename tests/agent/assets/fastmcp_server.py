"""A small FastMCP server (the MCP SDK's own high-level API) for the agent's MCP client tests."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("weather")


@server.tool()
def forecast(city: str, days: int = 1) -> str:
    """Forecast the weather of a city."""
    return f"{city}: sunny for {days} day(s)"


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


if __name__ == "__main__":
    server.run("stdio")
