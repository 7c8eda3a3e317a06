import sys

from probexit.cli.main import main

sys.exit(main())
