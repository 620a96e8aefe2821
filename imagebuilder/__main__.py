import sys

from imagebuilder.cli.main import main

sys.exit(main())
