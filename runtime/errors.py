"""User-facing errors: raised for a user's mistake, printed as one line by the CLI, never a traceback."""


class UserError(Exception):
    """Bad input, a missing file, an invalid option: something the user can fix."""
