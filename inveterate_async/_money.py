"""What counts as decimal money text."""

import re

# Plain decimal notation with an optional exponent: no NaN, infinities,
# underscores or surrounding spaces, which Decimal() would otherwise accept.
DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
