"""Tests start the real service through `sobesednik.supervisor` (shared with `sobesednik demo`).

    from service_process import run_service     # tests/ is on sys.path (rootdir conftest)
"""

from sobesednik.supervisor import ServiceHandle, free_port, run_service

__all__ = ["ServiceHandle", "free_port", "run_service"]
