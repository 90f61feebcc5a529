"""Load testing the chat server with Locust.

`loadtest/chat_user.py` is the locustfile (`locust -f loadtest/chat_user.py --host HOST:PORT`);
`python -m loadtest.run` (what `make loadtest` runs) starts a server, runs a short headless test
against it and prints a summary. docs/LOADTEST.md is the user guide.
"""
