"""``python -m pqstudy …`` is the ``pqstudy`` command (torchrun starts modules: ``torchrun ... -m pqstudy train``)."""

import sys

from pqstudy.cli import main

sys.exit(main())
