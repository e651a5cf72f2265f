"""One router per resource: chat completions, completions, models, health and metrics."""
