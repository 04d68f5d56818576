"""``python -m app`` runs the same entry point as ``backprop-studio``."""

import sys

from app.cli import main

sys.exit(main())
