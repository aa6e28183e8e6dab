"""What stands in front of every route: security headers, rate limits, body size, the operator password."""
