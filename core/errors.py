"""Error types that the command line turns into exit statuses.

``VitcInputError``  bad input or usage: one line on stderr, exit status 2.
``VitcCheckFailed`` a check ran and failed (e.g. validation beyond tolerance): exit 1.
"""


class VitcError(Exception):
    """Base class of every error vitc reports to the user."""


class VitcInputError(VitcError):
    """Bad input or usage (missing file, not ONNX, unknown pass, invalid hardware file ...)."""


class VitcCheckFailed(VitcError):
    """A requested check ran and did not pass."""
