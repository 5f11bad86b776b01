"""User-facing errors: raised for a user's mistake, printed as one line by the CLI, never a traceback."""


class UserError(Exception):
    """Bad input, a missing file, an invalid option: something the user can fix."""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (whitespace folded, at most 300 characters; its type when empty)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
