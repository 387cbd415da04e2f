"""``python -m collapse_spectroscopy.cli``: the ``collapse-spectroscopy`` command."""

import sys

from . import main

sys.exit(main())
