"""``python -m collapse_spectroscopy.cli``: the ``collapse-spectroscopy`` command."""

import sys

from collapse_spectroscopy.cli import main

sys.exit(main())
