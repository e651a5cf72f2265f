"""`python -m sobesednik` runs the CLI (also what `accelerate launch -m sobesednik train …` calls)."""

from sobesednik.cli import app

if __name__ == "__main__":
    app()
