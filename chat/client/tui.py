"""The terminal interface: a prompt_toolkit prompt at the bottom, incoming lines printed above it,
so they never tear what the user is typing. prompt_toolkit is imported only when this is used."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from chat.client.render import (
    LOCAL_HELP,
    format_client_line,
    format_own_line,
    format_server_line,
)

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession


class TerminalUI:
    """A prompt_toolkit prompt; incoming lines are printed above it (see `active`)."""

    interactive = True

    def __init__(self, colour: bool) -> None:
        from prompt_toolkit import PromptSession  # only the terminal mode needs it

        self.colour = colour
        # The prompt is erased on Enter and the line shown again as history, in the same style
        # as everything else, so the screen reads as one conversation.
        self._session: PromptSession[str] = PromptSession(erase_when_done=True)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """While active, stdout writes go above the prompt without disturbing what is typed."""
        from prompt_toolkit.patch_stdout import patch_stdout

        # raw=True lets our own colour codes through; other people's text is already sanitised.
        with patch_stdout(raw=True):
            yield

    async def ask(self, prompt: str) -> str | None:
        """The line typed at `prompt`; None on Ctrl-D (on an empty line) or Ctrl-C."""
        try:
            return await self._session.prompt_async(prompt)
        except (EOFError, KeyboardInterrupt):
            return None

    def show_server_line(self, line: str) -> None:
        print(format_server_line(line, self.colour), flush=True)

    def show_own_line(self, text: str) -> None:
        print(format_own_line(text, self.colour), flush=True)

    def show_local_help(self) -> None:
        for line in LOCAL_HELP:
            print(format_client_line(line, self.colour), flush=True)
