"""`python -m chat.client`: the terminal client (see chat.client.cli)."""

import sys

from chat.client.cli import main

sys.exit(main())
