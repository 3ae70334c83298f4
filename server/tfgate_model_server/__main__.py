"""``python -m tfgate_model_server``: the same as ``tfgate model-server``."""

import sys

from tfgate_model_server.cli import main

sys.exit(main(sys.argv[1:]))
