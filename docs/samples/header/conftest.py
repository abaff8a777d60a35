"""Every client imported before the header is written: each is listed with its version."""

import aiohttp  # noqa: F401
import httpcore  # noqa: F401
import httpx  # noqa: F401
import requests  # noqa: F401
