"""python -m minunet.bench: see minunet/bench/__init__.py."""
import sys

from .driver import main

sys.exit(main())
