class InputError(ValueError):
    """Bad input from the user (a file, a flag, a checkpoint): the message is one line that names it."""


class DataError(InputError):
    """Bad input data: the message names the file, row, column or flag."""
