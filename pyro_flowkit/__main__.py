import sys

from pyro_flowkit.app.cli import main

sys.exit(main())
