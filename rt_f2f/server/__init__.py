"""Browser video calls: an aiohttp + aiortc server where each participant hears the others in their own language.

Importing this package stays cheap (the CLI lists it); the app lives in ``rt_f2f.server.app``.
"""

from .cli import add_subcommand

__all__ = ["add_subcommand"]
