"""``python -m imagebuilder``: the library's command line (see imagebuilder.cli.main)."""

import sys

from imagebuilder.cli.main import main

sys.exit(main())
