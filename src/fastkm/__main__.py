"""``python -m fastkm``: the same as the ``fastkm`` command."""

import sys

from .cli import main

sys.exit(main())
