"""What the CLIs need to parse their flags, importing nothing heavy: train.py parses its flags
before torch and transformers load (seconds), so `--help` and a misspelt flag answer at once."""
import argparse


class ShowDefaults(argparse.HelpFormatter):
    """--help shows each flag's default (unless it has none, or its help already says it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if any(action.default is none for none in (None, False, argparse.SUPPRESS)) or "default" in text \
                or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()
