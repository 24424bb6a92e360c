import sys

from pyro_flowkit.cli import main

sys.exit(main())
