"""Keeping secrets out of what we show: logs, dry runs, render output, summaries, messages.

One set of rules, decided here:

- Which variables are secrets (``SECRET_VARIABLES``): their values never reach argv,
  a log line or a message, and in structured output the value of such a field is
  shown as ``<sensitive>`` whatever it is.
- Names that only look like secrets (``is_secret_name``: a misspelt ``pasword``
  too): messages never quote their values either.
- Free text (a log line, a dry run, an error): a secret of ``MIN_LENGTH_IN_TEXT``
  characters or more is replaced wherever it appears; a shorter one only where it
  stands alone (not inside a word): replacing every "p" of a log would wreck it and
  reveal the secret anyway.
- Structured data (JSON): values only, never keys. A string that is exactly a secret
  is replaced whatever its length; inside a longer string the free-text rule applies.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Mapping

#: What stands where a secret was.
REDACTED = "<sensitive>"

#: Variables whose values are secrets: never on argv, never in a log line or a message.
SECRET_VARIABLES = frozenset({"password", "ssh_password", "rhsm_pass", "vsphere_password",
                              "remote_password", "additional_s3_access",
                              "additional_s3_secret", "windows_admin_password"})

#: Secrets shorter than this are replaced in free text only where they stand alone.
MIN_LENGTH_IN_TEXT = 4

#: Words in a name that say its value is probably a secret (for messages).
_SECRET_WORDS = ("pass", "secret", "token")

def is_secret_name(name: str) -> bool:
    """Whether a variable's value must never appear in a message (a misspelt
    secret such as ``pasword`` included)."""
    lowered = name.lower()
    return name in SECRET_VARIABLES or any(w in lowered for w in _SECRET_WORDS) \
        or bool(difflib.get_close_matches(lowered, SECRET_VARIABLES, n=1, cutoff=0.75))


class Redactor:
    """Replaces the given secret values with ``<sensitive>``, by the rules above.

    Calling it (``redact(line)``) redacts free text, as ``text`` does.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._exact = frozenset(unique)
        self._long = [s for s in unique if len(s) >= MIN_LENGTH_IN_TEXT]
        short = [s for s in unique if len(s) < MIN_LENGTH_IN_TEXT]
        self._short = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, short))
                                 + r")(?![A-Za-z0-9])") if short else None

    def text(self, text: str) -> str:
        """Free text with every secret replaced (short ones only where they stand alone)."""
        for secret in self._long:
            text = text.replace(secret, REDACTED)
        if self._short:
            text = self._short.sub(REDACTED, text)
        return text

    __call__ = text

    def data(self, value: object) -> object:
        """JSON-shaped ``value`` (dicts, lists, strings, numbers) with its secrets replaced.

        Keys are kept as they are; the value of a key in SECRET_VARIABLES is replaced
        whole (an empty one stays empty); a string that is a secret is replaced whole,
        and a longer string is redacted as free text.
        """
        if isinstance(value, dict):
            return {key: self._field(key, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.data(item) for item in value]
        if isinstance(value, str):
            return REDACTED if value in self._exact else self.text(value)
        return value

    def _field(self, key: object, value: object) -> object:
        if key in SECRET_VARIABLES and isinstance(value, str):
            return REDACTED if value else ""
        return self.data(value)

    def variables(self, values: Mapping[str, str]) -> dict[str, str]:
        """Variables (name -> value) as structured data: see ``data``."""
        return {key: str(self._field(key, value)) for key, value in values.items()}
