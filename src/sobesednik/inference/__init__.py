"""Generation: load a model dir or a run dir, turn messages into replies, batch concurrent requests."""
