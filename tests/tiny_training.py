"""A few optimizer steps on one batch: enough to move LoRA weights and added token rows in tests.

    from tiny_training import train_briefly     # tests/ is on sys.path (rootdir conftest)
"""

from __future__ import annotations

from typing import Any


def train_briefly(model: Any, batch: Any, steps: int = 3) -> None:
    """`steps` AdamW steps of the LM loss on `batch` over the trainable parameters; leaves the model in eval."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
