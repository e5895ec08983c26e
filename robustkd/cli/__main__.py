"""``python -m robustkd.cli`` (what torchrun runs: ``torchrun ... -m robustkd.cli evaluate ...``)."""

import sys

from robustkd.cli import main

sys.exit(main())
