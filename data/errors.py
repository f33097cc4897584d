class DataError(ValueError):
    """Bad input data: the message is one line that names the file, row, column or flag."""
