"""`python -m vocabseg.cli ...` (also under torchrun)."""
import sys

from vocabseg.cli import main

sys.exit(main())
