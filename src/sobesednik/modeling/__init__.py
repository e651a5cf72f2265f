"""Base models and tokenizers: loading, role tokens, the chat template, tiny offline stand-ins."""
