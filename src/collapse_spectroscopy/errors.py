"""One exception type for bad input, so the CLI can turn it into a clear message.

Every check of user input (a file, a config key, a value) raises :class:`InputError`
with a message that names the file, key or value and says what was expected. The CLI
prints it without a traceback and exits with status 2.
"""


class InputError(ValueError):
    """Bad input from the user: the message names what is wrong and what was expected."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss): the message names T, seed and update."""
