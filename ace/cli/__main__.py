"""``python -m ace.cli``: the ``ace`` command without the installed script."""
import sys

from ace.cli import main

sys.exit(main())
