"""`python -m vocabseg ...`: the command line."""
import sys

from vocabseg.cli import main

sys.exit(main())
