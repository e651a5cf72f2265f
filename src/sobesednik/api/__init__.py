"""The OpenAI-compatible HTTP service: app factory, routes, schemas, errors, metrics."""
