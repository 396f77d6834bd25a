"""The one base of every error a user can act on."""


class UserError(Exception):
    """Bad input or a state the user must fix; the message says what and how, in one line.

    The CLI prints it as `error: <message>` (exit 2) instead of a traceback; anything else
    is a bug and keeps its traceback.
    """
