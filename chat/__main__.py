"""`python -m chat`: say which entry point does what."""

import sys

USAGE = """\
threaded-chat: a thread-per-client TCP chat server and its client.

  python -m chat.server [--port 5555] ...   start the server (--help for every option)
  python -m chat.client [--name NAME] ...   the terminal client (--help for every option)

The wire protocol is in docs/PROTOCOL.md; a line-based tool such as `nc 127.0.0.1 5555`
works as a client too.
"""

if __name__ == "__main__":
    sys.stdout.write(USAGE)
    sys.exit(0)
