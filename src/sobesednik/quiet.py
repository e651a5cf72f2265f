"""One progress display per stage, the command's own: library warnings, info logs and progress bars off.

    quiet_libraries()   # before a stage that loads or trains a model (the CLI's model commands, the demo)
"""

from __future__ import annotations


def quiet_libraries() -> None:
    """Silence what `transformers` prints on its own: info logs and warnings (`loss_type=None`, checkpoint
    ordering), deprecation notices raised inside peft/Trainer calls, the "Loading weights" bars. Errors still
    show. The Trainer's progress bar is `train --progress`'s (it would otherwise follow the log level)."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    # transformers' own deprecation notices (`is_gradient_checkpointing`, raised inside peft/Trainer calls)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
