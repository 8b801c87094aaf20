"""One exception for bad input: its message is the one line a user sees."""


class SmecError(Exception):
    """Bad input or state that the user can fix; the message names the file, key or value."""
