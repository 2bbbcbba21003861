"""`python -m redflag_local.bench` (`make bench`): see ``redflag_local.bench.run``."""

import sys

from redflag_local.bench.run import main

sys.exit(main())
